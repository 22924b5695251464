"""Running a sweep's jobs: subprocesses, `parallel` at a time, stopped together.

Each job is one run.py (or vmapped multiseed) process in a session of its own, with its output
in its run.log. A stop request (the sweep's Ctrl-C or SIGTERM) starts nothing new and passes
SIGTERM to the running jobs, which checkpoint and exit; a job ends 'done' when every seed it
trains has its final test row, 'stopped' when it exited as a stopped run, else 'failed' with its
last error line.
"""

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from typing import NamedTuple

from s2s_jax import config_files
from s2s_jax.studies import grid, results
from s2s_jax.training import stopping
from s2s_jax.training.stopping import StopRequest

ROOT = config_files.REPO_ROOT  # where run.py lives


class Job(NamedTuple):
    point: grid.Point
    seeds: tuple  # seeds this process trains (one, or several with --vmap)
    command: tuple  # argv
    log: str  # file that receives the process's stdout and stderr
    env: tuple = ()  # (name, value) pairs added to the process's environment


def is_finished(sweep_dir: str, point: grid.Point, seed: int) -> bool:
    rows = results.read_rows(results.seed_dir(sweep_dir, point.name, seed))
    return results.final_test_row(rows, point.steps) is not None


class Process:
    """A job as a child process. It gets its own session, so a Ctrl-C in the terminal reaches
    only the sweep, which then stops its runs with SIGTERM (they checkpoint before exiting)."""

    def __init__(self, job: Job):
        os.makedirs(os.path.dirname(job.log), exist_ok=True)
        with open(job.log, "a") as log:
            log.write(f"\n$ {shlex.join(job.command)}\n")
            log.flush()
            self._proc = subprocess.Popen(
                job.command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **dict(job.env)},
            )

    def poll(self):
        return self._proc.poll()

    def terminate(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)


def say(line: str) -> None:
    print(line, flush=True)  # progress must show up promptly in a log file too


class Outcome(NamedTuple):
    job: Job
    status: str  # 'done' | 'stopped' | 'failed'
    message: str  # for 'failed': the run's last error line


def _last_error(log_path: str) -> str:
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1][:300]


def run_jobs(
    jobs: list,
    sweep_dir: str,
    parallel: int = 1,
    start: Callable = Process,
    stop: StopRequest | None = None,
    report: Callable = say,
    poll_s: float = 0.2,
) -> list:
    """Runs `jobs`, `parallel` at a time, until all end or `stop.requested` is set.

    Args:
      jobs: from make_jobs.
      sweep_dir: where the runs write (to tell a finished run from a stopped one).
      parallel: processes at once.
      start: job -> a handle with poll() (None while running, else the exit status) and
        terminate(); tests pass a fake.
      stop: its `requested` flag stops the sweep: nothing new starts and running jobs get
        terminate() (run.py then checkpoints and exits 143, stopping.STOPPED_STATUSES).
      report: receives one progress line per finished job.
      poll_s: seconds between polls.

    Returns:
      One Outcome per job that ran, in the order they ended.
    """
    stop = stop or StopRequest()
    pending, running, outcomes = list(jobs), [], []
    terminated = False
    while (pending and not stop.requested) or running:
        while pending and len(running) < parallel and not stop.requested:
            job = pending.pop(0)
            running.append((job, start(job), time.time()))
        if stop.requested and not terminated:
            for _, handle, _ in running:
                handle.terminate()
            terminated = True
        still = []
        for job, handle, began in running:
            code = handle.poll()
            if code is None:
                still.append((job, handle, began))
                continue
            if all(is_finished(sweep_dir, job.point, s) for s in job.seeds):
                outcome = Outcome(job, "done", "")
            elif code in stopping.STOPPED_STATUSES or -code in stopping.SIGNALS:
                # It checkpointed and exited 143 (or 130), or the signal came before its
                # handler was installed: either way the same command resumes it.
                outcome = Outcome(job, "stopped", "")
            else:
                outcome = Outcome(job, "failed", f"exit {code}: {_last_error(job.log)}")
            outcomes.append(outcome)
            seeds = ",".join(map(str, job.seeds))
            report(
                f"[{len(outcomes)}/{len(jobs)}] {job.point.name} seed {seeds}: "
                f"{outcome.status} after {time.time() - began:.0f}s"
                + (f" ({outcome.message})" if outcome.message else "")
            )
        running = still
        if running:
            time.sleep(poll_s)
    return outcomes
