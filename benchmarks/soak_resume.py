"""Soak check of resuming: one run killed and restarted many times ends as an uninterrupted one.

  python benchmarks/soak_resume.py                      # 20 kills of the tiny config, 2000 steps
  python benchmarks/soak_resume.py --kills=5 --steps=500 --workdir=/tmp/soak

Trains the tiny config (experiments/default.py:tiny) once without interruption, then runs the
same command in a second workdir and kills it `--kills` times at random moments, with SIGKILL or
SIGTERM at random, starting it again after each; then lets it finish. A `--startup_share` of the
kills land during start-up (uniform in [--min_wait_s, --startup_s] after the start: imports, data,
compilation, the restore); the others once the restarted run has written a new metrics row, after
a further uniform [0, --max_train_s] (training steps, evaluations, checkpoint writes, metrics
appends). Bounding the training time per start keeps the run from finishing before the last
kill. Prints one JSON line: whether the two metrics.jsonl hold
the same (step, split) rows, without duplicated or missing steps, with the same values (every
field but the timing one, tokens_per_s), and whether the final parameters are bitwise equal.

Not run by the tests (minutes of CPU time); the numbers of a run are in benchmarks/README.md.
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = ("tokens_per_s",)  # fields that measure the machine, not the run

flags.DEFINE_integer("kills", 20, "times the run is killed and started again")
flags.DEFINE_integer("steps", 2000, "training steps of the run")
flags.DEFINE_integer("checkpoint_every", 10, "checkpoint interval (what a SIGKILL can lose)")
flags.DEFINE_integer("eval_every", 50, "validation interval")
flags.DEFINE_float("startup_share", 0.25, "share of the kills aimed at start-up")
flags.DEFINE_float("min_wait_s", 1.0, "start-up kills: shortest time from the start")
flags.DEFINE_float("startup_s", 15.0, "start-up kills: longest time from the start")
flags.DEFINE_float("max_train_s", 1.0, "other kills: longest time after the first new row")
flags.DEFINE_integer("seed", 0, "seed of the kill moments and signals (not of the run)")
flags.DEFINE_string("workdir", None, "where the two runs go (default: a temporary directory)")
FLAGS = flags.FLAGS


def _command(workdir: str) -> list:
    return [
        sys.executable,
        os.path.join(ROOT, "run.py"),
        "--config=experiments/default.py:tiny",
        f"--workdir={workdir}",
        f"--steps={FLAGS.steps}",
        f"--checkpoint_every={FLAGS.checkpoint_every}",
        f"--eval_every={FLAGS.eval_every}",
    ]


def _env() -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def _run_to_end(workdir: str) -> int:
    proc = subprocess.run(
        _command(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(
            f"error: the run in {workdir} failed with {proc.returncode}: "
            f"{proc.stderr.strip()[-500:]}"
        )
    return proc.returncode


def _rows(workdir: str) -> list:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _last_step(workdir: str) -> int:
    """The step of the last whole row of metrics.jsonl (0 when there is none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = f.readlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue  # a torn row being written
    return 0


def _finished(workdir: str) -> bool:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return any('"split": "test"' in line for line in f)


def _params(workdir: str, step: int) -> dict:
    import jax  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    path = os.path.join(workdir, "checkpoints", str(step), "state")
    ckptr = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        ckptr.metadata(path).item_metadata,
    )
    params = ckptr.restore(path, abstract)["params"]
    return {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_flatten_with_path(params)[0]
    }


def _compare(whole: list, soaked: list) -> dict:
    keys = lambda rows: [(r["step"], r.get("split")) for r in rows]  # noqa: E731
    train_steps = [r["step"] for r in soaked if r.get("split") is None]
    expected = list(range(10, FLAGS.steps + 1, 10))  # tiny logs every 10 steps
    max_diff, identical = 0.0, keys(whole) == keys(soaked)
    for a, b in zip(whole, soaked):
        for name in set(a) - set(TIMING) - {"step", "split"}:
            if a[name] != b.get(name):
                identical = False
                if isinstance(a[name], (int, float)) and isinstance(b.get(name), (int, float)):
                    max_diff = max(max_diff, abs(a[name] - b[name]))
    return {
        "rows_match": keys(whole) == keys(soaked),
        "duplicated_steps": sorted({s for s in train_steps if train_steps.count(s) > 1}),
        "missing_steps": sorted(set(expected) - set(train_steps)),
        "metrics_identical": identical,
        "max_abs_diff": max_diff,
    }


def main(argv):
    del argv
    rng = random.Random(FLAGS.seed)
    base = FLAGS.workdir or tempfile.mkdtemp(prefix="soak_resume_")
    whole, soaked = os.path.join(base, "whole"), os.path.join(base, "soaked")
    began = time.time()
    _run_to_end(whole)
    reference_s = time.time() - began
    kills = []
    for _ in range(FLAGS.kills):
        if _finished(soaked):
            break  # a finished run has nothing left to interrupt
        signum = rng.choice([signal.SIGKILL, signal.SIGTERM])
        at_startup = rng.random() < FLAGS.startup_share
        before = _last_step(soaked)
        started = time.time()
        # stderr to a file: a pipe nobody reads while the run logs could fill and block it
        with tempfile.TemporaryFile("w+") as log:
            proc = subprocess.Popen(
                _command(soaked),
                cwd=ROOT,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
            if at_startup:
                deadline = started + rng.uniform(FLAGS.min_wait_s, FLAGS.startup_s)
            else:
                while proc.poll() is None and _last_step(soaked) <= before:
                    time.sleep(0.05)
                deadline = time.time() + rng.uniform(0.0, FLAGS.max_train_s)
            while proc.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signum)
            proc.wait()
            wait = time.time() - started
            log.seek(0)
            err = log.read()
        resumed = [
            line.split("resumed from checkpoint ")[1].split()[0]
            for line in err.splitlines()
            if "resumed from checkpoint " in line
        ]
        # The line train.py logs once the state is restored: the kill came while training.
        training = any(
            " parameters, " in line and " device(s), " in line for line in err.splitlines()
        )
        kills.append(
            {
                "signal": signal.Signals(signum).name,
                "after_s": round(wait, 1),
                "aimed_at": "start-up" if at_startup else "training",
                "exit": proc.returncode,
                "while_training": training,
                "resumed_from": int(resumed[0]) if resumed else None,
                "last_step": _last_step(soaked),
                "error": next(
                    (line for line in err.splitlines() if line.startswith("error:")), None
                ),
            }
        )
    soak_start = time.time()
    if not _finished(soaked):  # a finished run started again would evaluate on test again
        _run_to_end(soaked)
    row = {
        "benchmark": "soak_resume",
        "kills": len(kills),
        "signals": {s: sum(k["signal"] == s for k in kills) for s in ("SIGKILL", "SIGTERM")},
        "exit_statuses": sorted({k["exit"] for k in kills}),
        "kills_while_training": sum(k["while_training"] for k in kills),
        "errors": [k["error"] for k in kills if k["error"]],
        "resumed_from": [k["resumed_from"] for k in kills],
        "stopped_at_steps": [k["last_step"] for k in kills],
        **_compare(_rows(whole), _rows(soaked)),
        "params_identical": all(
            (a == b).all()
            for a, b in zip(
                _params(whole, FLAGS.steps).values(), _params(soaked, FLAGS.steps).values()
            )
        ),
        "final_test": next(r for r in _rows(soaked) if r.get("split") == "test"),
        "reference_run_s": round(reference_s, 1),
        "soak_s": round(soak_start - began - reference_s + time.time() - soak_start, 1),
        "steps": FLAGS.steps,
        "checkpoint_every": FLAGS.checkpoint_every,
        "seed": FLAGS.seed,
        "workdir": base,
        "cpu_model": common.cpu_model(),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
