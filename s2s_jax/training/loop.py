"""The one training loop: K runs' steps, rows, evaluations, checkpoints and stop, written once.

`train_runs` drives a `Program`, which says how a step advances the runs' state: the ordinary
run (train.train_and_evaluate) is K = 1 with the jitted train step as it is; the multi-seed
program (studies/multiseed.py) is K seeds with the step vmapped over states, batches and keys
stacked on a leading [K] axis. Everything else, which steps log, evaluate or checkpoint, what a
stop saves, what a non-finite loss does, and the final test evaluation, is the same code for both,
so a seed of the K-seed program writes what the ordinary run with that seed writes.
"""

import contextlib
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from absl import logging

from s2s_jax.training import checkpoint, host_memory
from s2s_jax.training.run_log import RunLog


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. a non-finite loss); the message says what was kept."""


class Run(NamedTuple):
    """One run's files. `seed` is None for the ordinary run; a seed of the K-seed program names
    it, and its non-finite loss then stops that seed alone."""

    seed: int | None
    log: RunLog
    ckpt: checkpoint.Checkpoints


class Program(NamedTuple):
    """How the loop advances K runs' state.

    step: the jitted `(state, batch, keys) -> (state, metrics)`; donates the state.
    keys: the step keys (one key, or [K, 2] for stacked seeds).
    next_batch: `() -> batch` as `step` takes it.
    data_state: `(k) -> dict`, run k's data iterator state.
    part: `(tree, k) -> tree`, run k's slice of a state or metrics tree (the identity for one run).
    evaluate: `(params, split) -> metrics` of one run's parameters.
    """

    step: Callable
    keys: jax.Array
    next_batch: Callable
    data_state: Callable
    part: Callable
    evaluate: Callable


def data_record(iterator_state: dict, window: list) -> dict:
    """What a checkpoint keeps beside the train state: the data iterator's state, and the
    per-step metrics read since the last training row. A run stopped between two rows (SIGTERM
    saves the step in flight) thus writes the next row over the same steps, with the same values,
    as an uninterrupted run."""
    return {
        "iterator": iterator_state,
        "window": [[step, {k: float(v) for k, v in m.items()}] for step, m in window],
    }


def from_data_record(record: dict) -> tuple:
    """(iterator state, window) of a checkpoint's data record; a checkpoint saved before the
    record held a window holds the iterator state alone."""
    if set(record) == {"iterator", "window"}:
        return record["iterator"], [(step, m) for step, m in record["window"]]
    return record, []


def _check_step_memory(step_fn, state, batch, keys) -> None:
    """Warns when the step's temporaries are too big for the process's malloc mode to keep.
    Compiling here costs nothing extra: the step's first call reuses this executable."""
    analysis = step_fn.lower(state, batch, keys).compile().memory_analysis()
    advice = host_memory.step_block_advice(getattr(analysis, "temp_size_in_bytes", 0))
    if advice:
        logging.warning("%s", advice)


def _failure(run: Run, value: float, step: int) -> str:
    """The message for run's loss becoming `value` at `step`; the ordinary run raises it."""
    if run.seed is None:
        raise TrainingError(
            f"the loss became {value} at step {step}; stopped without saving it. Kept "
            f"checkpoints: {run.ckpt.steps() or 'none'}. Lower --learning_rate or set "
            f"--config.train.clip_norm, then rerun the same command to resume"
        )
    message = (
        f"seed {run.seed}: the loss became {value} at step {step}; its checkpoints stop "
        f"at {run.ckpt.steps() or 'none'}"
    )
    run.log.info(message)
    return message


def _read(pending: list, runs: list, part, windows: list, failed: dict) -> None:
    """Reads the pending (step, device metrics) on the host into each run's window; a run whose
    loss became non-finite goes into `failed` (the ordinary run raises)."""
    for n, m in zip([n for n, _ in pending], jax.device_get([m for _, m in pending])):
        for i, run in enumerate(runs):
            mine = part(m, i)
            if not np.isfinite(mine["loss"]) and i not in failed:
                failed[i] = _failure(run, float(mine["loss"]), n)
            windows[i].append((n, mine))


def train_runs(runs: list, program: Program, state, start: int, windows: list, t, stop) -> tuple:
    """Trains `runs` (all restored at step `start`) to t.steps, writing their rows and
    checkpoints, and evaluates each on test at the end.

    Args:
      runs: the K runs, in the order of the state's slices.
      program: how a step advances `state`.
      state: the runs' train state (stacked for K seeds).
      start: the step every run restored (0: none).
      windows: per run, the (step, host metrics) its checkpoint kept since its last row.
      t: the config's train section.
      stop: a StopRequest; its flag is read once per step.

    Returns:
      (results, state): per run the final test metrics with `step`, {'stopped_at': step,
      'signal': name}, or {'failed': message} (a seed whose loss became non-finite); and the
      runs' last state.

    Raises:
      TrainingError: the ordinary run's loss became non-finite.
    """
    for run in runs:
        run.log.truncate_after(start)
    failed = {}  # index in runs -> message
    pending = []  # (step, device metrics) not yet read on the host
    windows = [list(w) for w in windows]  # per run: (step, host metrics) since the last row
    sync_every = max(1, min(t.log_every, 16))  # a host read at least every 16 steps (STACK_NOTES)
    clock, clock_step = time.time(), start
    step = start
    while step < t.steps and len(failed) < len(runs):
        batch = program.next_batch()
        first = step == start
        if first and jax.default_backend() == "cpu":
            _check_step_memory(program.step, state, batch, program.keys)
        state, metrics = program.step(state, batch, program.keys)
        step += 1
        if first:  # compile time matters on accelerators (tens of seconds there): report it
            jax.block_until_ready(metrics["loss"])
            runs[0].log.info(f"first step (trace, compile, run) took {time.time() - clock:.1f} s")
        pending.append((step, metrics))
        # The flag is read once: SIGTERM can set it at any moment, and a stop decided after
        # due_ckpt was computed would exit without saving this step.
        stopping = stop.requested
        due_eval = step % t.eval_every == 0 or step == t.steps
        due_ckpt = step % t.checkpoint_every == 0 or step == t.steps or stopping
        due_log = step % t.log_every == 0 or step == t.steps
        if step % sync_every == 0 or due_log or due_eval or due_ckpt:
            _read(pending, runs, program.part, windows, failed)
            pending = []
        alive = [i for i in range(len(runs)) if i not in failed]
        if due_log:
            now = time.time()
            for i in alive:
                runs[i].log.train_row(step, windows[i], now - clock, step - clock_step, t.steps)
            clock, clock_step, windows = now, step, [[] for _ in runs]
        eval_metrics = {}
        if due_eval:
            eval_start = time.time()
            for i in alive:
                eval_metrics[i] = program.evaluate(program.part(state.params, i), "valid")
                runs[i].log.eval_row(step, "valid", eval_metrics[i])
            clock += time.time() - eval_start  # steps/s and ETA count training time only
        if due_ckpt:
            for i in alive:
                runs[i].ckpt.save(
                    step,
                    program.part(state, i),
                    data_record(program.data_state(i), windows[i]),
                    eval_metrics.get(i),
                )
        if stopping:
            for run in runs:
                run.ckpt.wait()
            seeds = [runs[i].seed for i in alive if runs[i].seed is not None]
            which = f" of seeds {seeds}" if seeds else ""
            runs[0].log.info(
                f"stopped: saved checkpoint {step}{which}; rerun the same command to resume"
            )
            stopped = {"stopped_at": step, "signal": stop.signal_name}
            return [
                {"failed": failed[i]} if i in failed else stopped for i in range(len(runs))
            ], state
    out = []
    for i, run in enumerate(runs):
        if i in failed:
            out.append({"failed": failed[i]})
            continue
        run.ckpt.wait()
        best = run.ckpt.best_step()
        if best is not None and best != t.steps:
            run.log.info(f"final step {t.steps}; best validation {t.best_metric} at step {best}")
        test = program.evaluate(program.part(state.params, i), "test")
        run.log.eval_row(t.steps, "test", test)
        out.append({"step": t.steps, **test})
    return out, state


def finish(closers, quiet: bool) -> None:
    """Runs the clean-up calls; with `quiet` (an error is on its way out already) a failing one
    is a warning, so that error stays the one line the command prints (a full disk fails the
    TensorBoard flush and the checkpoint wait too)."""
    for close in closers:
        try:
            close()
        except Exception as err:  # noqa: BLE001 - reported, and the first error goes on
            if not quiet:
                raise
            logging.warning(
                "while stopping: %s: %s",
                type(err).__name__,
                (str(err).splitlines() or [""])[0][:200],
            )


@contextlib.contextmanager
def closing(runs: list):
    """Waits for and closes every run's checkpoints and log after the block, quietly when the
    block raised."""
    failing = False
    try:
        yield
    except BaseException:
        failing = True
        raise
    finally:
        finish(
            [f for run in runs for f in (run.ckpt.wait, run.ckpt.close, run.log.close)],
            quiet=failing,
        )
