"""Grid sweeps: every point of a study's grid, for every seed, as a normal resumable run.

  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --seeds=3 --workdir=runs/bridges
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --parallel=2 \
      --workdir=runs/bridges
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py:tiny --workdir=/tmp/b \
      --axis=model.bridge=zero,dense --set=train.steps=20      # a smaller grid, shorter runs
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --vmap --workdir=runs/bridges
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --workdir=runs/dense_p \
      --axis=model.bridge=dense --axis=sampling.probability=0,0.1,0.25 \
      --baseline=sampling.probability=0            # each cap against teacher forcing, per seed

The grid comes from the config's `sweep` section (see experiments/bridges.py):
  sweep.axes     [(field, values), ...]: `field` is a dotted config field ('model.bridge') and
                 the grid is the product of the axes. A tuple of fields makes one axis over
                 settings that only make sense together, each value a tuple with one entry per
                 field, e.g. (('sampling.schedule', 'sampling.probability'), [('linear', 0.1)]).
  sweep.metrics  final test metrics to tabulate ('exact_match', 'bleu', ...).
  sweep.seeds    the default of --seeds.
  sweep.baseline optional [(field, value), ...] naming one grid point by its axis values, e.g.
                 [('sampling.probability', 0.0)]: results.md then compares every other point
                 with it seed by seed (s2s_jax/studies/results.py).
                 --baseline=FIELD=VALUE (repeatable) replaces it, --baseline=none turns
                 it off.
(A list of pairs rather than a {'model.bridge': [...]} dict: ConfigDict rejects dots in keys.)

Each seed of each point is `python run.py --config=FILE:VARIANT --workdir=W/<point>/seed<k>
--config.<field>=<value> ... --config.train.seed=<k>`, run as a subprocess, one at a time or
--parallel at a time, with its output in `W/<point>/seed<k>/run.log`. Stop the sweep (Ctrl-C or
SIGTERM) and it passes SIGTERM on, so every run in flight checkpoints its current step; start
the same command again and finished runs (their metrics.jsonl has the test row of the last
step) are skipped while unfinished ones resume from their own checkpoints, as run.py does. With
--vmap, the unfinished seeds of a point train together in one program (s2s_jax/studies/multiseed.py)
and write the same per-seed workdirs.

The runs share a persistent XLA compilation cache in W/xla_cache (--nocompilation_cache: none),
so seeds after the first of a point load its compiled steps instead of compiling them again.

A run that fails (non-zero exit) is reported with its last error line and the sweep goes on; the
sweep exits 1 if any run failed or it was stopped. At the end (and after every stop) it writes
W/results.csv, W/results.md and PNG plots over the seeds that finished (s2s_jax/studies/results.py).
Bad input (an unknown config or field, an empty grid) is one line on stderr and exit status 2.
"""

import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import NamedTuple

import ml_collections

from s2s_jax.studies import grid, results
from s2s_jax.studies.jobs import ROOT, Job, Process, is_finished, run_jobs, say
from s2s_jax.training import run_log, workdir_lock
from s2s_jax.training.stopping import StopRequest

DEFAULT_METRICS = ["exact_match", "token_accuracy", "bleu", "loss"]
CACHE_DIR = "xla_cache"  # W/xla_cache: the persistent compilation cache the runs share


class SweepError(ValueError):
    """Bad sweep input: the message is the one line the command prints."""


# --- Jobs -----------------------------------------------------------------------------------
def _config_flag(path: str, variant: str) -> str:
    return f"--config={path}:{variant}" if variant else f"--config={path}"


def _override_flags(fixed: tuple, point: grid.Point) -> list:
    return [f"--config.{f}={grid.format_value(v)}" for f, v in fixed + point.settings]


def compilation_cache_env(sweep_dir: str) -> tuple:
    """The environment that makes the sweep's runs share one persistent XLA compilation cache,
    W/xla_cache (unless the environment already names one).

    Seeds of a point differ only in values, so every seed after the first loads the compiled
    train and eval steps instead of compiling them: seconds on a CPU, tens of seconds per run on
    a GPU (36-77 s on an H200, benchmarks/README.md). Every compilation is cached, however short
    (JAX's default skips those under a second).
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return ()
    return (
        ("JAX_COMPILATION_CACHE_DIR", os.path.abspath(os.path.join(sweep_dir, CACHE_DIR))),
        ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
    )


def make_jobs(
    sweep_dir: str,
    path: str,
    variant: str,
    points: list,
    seeds: list,
    fixed: tuple = (),
    vmap: bool = False,
    env: tuple = (),
) -> list:
    """The runs still to do: every (point, seed) without a final test row in its workdir.

    Finished runs are left alone; an unfinished one gets the same command as before, so run.py
    resumes it from its checkpoints. With `vmap`, one job per point trains its unfinished seeds.
    `env` is added to every job's environment.
    """
    jobs = []
    for point in points:
        todo = [s for s in seeds if not is_finished(sweep_dir, point, s)]
        if not todo:
            continue
        overrides = _override_flags(fixed, point)
        if vmap:
            point_dir = os.path.join(sweep_dir, point.name)
            command = (
                sys.executable,
                "-m",
                "s2s_jax.studies.multiseed",
                _config_flag(path, variant),
                f"--workdir={point_dir}",
                f"--seeds={','.join(map(str, todo))}",
                *overrides,
            )
            jobs.append(
                Job(point, tuple(todo), command, os.path.join(point_dir, "multiseed.log"), env)
            )
            continue
        for seed in todo:
            workdir = results.seed_dir(sweep_dir, point.name, seed)
            command = (
                sys.executable,
                os.path.join(ROOT, "run.py"),
                _config_flag(path, variant),
                f"--workdir={workdir}",
                *overrides,
                f"--config.train.seed={seed}",
            )
            jobs.append(Job(point, (seed,), command, os.path.join(workdir, "run.log"), env))
    return jobs


# --- The command ----------------------------------------------------------------------------
def _manifest_points(points: list) -> list:
    """Points as sweep.json holds them and results.collect reads them."""
    return [{"name": p.name, "settings": dict(p.settings), "steps": p.steps} for p in points]


def write_results(
    sweep_dir: str,
    points: list,
    seeds: list,
    metrics: list,
    command: str,
    failures: tuple = (),
    baseline: str = "",
) -> str:
    """results.csv / results.md / PNGs over the finished seeds; returns the markdown."""
    collected = results.collect(sweep_dir, _manifest_points(points), seeds)
    return results.write_all(sweep_dir, collected, metrics, command, failures, baseline)


def sweep(
    config_spec: str,
    workdir: str,
    seeds: int | None = None,
    parallel: int = 1,
    vmap: bool = False,
    axis_flags: tuple = (),
    set_flags: tuple = (),
    command: str = "",
    start: Callable = Process,
    stop: StopRequest | None = None,
    report: Callable = say,
    compilation_cache: bool = True,
    baseline_flags: tuple = (),
) -> int:
    """Runs (or continues) a sweep and writes its results; returns the exit status (0, or 1
    when a run failed or the sweep was stopped).

    Raises:
      grid.GridError, SweepError: bad input, before anything runs.
    """
    path, variant, config = grid.load_config(config_spec)
    axes = grid.apply_axis_flags(config, grid.config_axes(config), list(axis_flags))
    fixed = grid.parse_set_flags(config, axes, list(set_flags))
    points = grid.points(config, axes, fixed)
    baseline = grid.baseline_name(config, axes, points, list(baseline_flags))
    sweep_section = config.get("sweep", ml_collections.ConfigDict())
    seeds = seeds if seeds is not None else int(sweep_section.get("seeds", 1))
    if seeds < 1 or parallel < 1:
        raise SweepError(f"--seeds and --parallel must be at least 1, got {seeds} and {parallel}")
    seed_list = list(range(seeds))
    metrics = list(sweep_section.get("metrics", DEFAULT_METRICS))
    run_log.make_workdir(workdir)  # a file or an unwritable path: one line, before any run
    plan = _Plan(config_spec, path, variant, points, seed_list, metrics, fixed, baseline, command)
    # A second sweep on W would start the same runs; each run locks its own workdir as well.
    with workdir_lock.WorkdirLock(workdir):
        return _sweep(workdir, plan, parallel, vmap, start, stop, report, compilation_cache)


class _Plan(NamedTuple):
    """What a sweep runs, resolved from its config and flags."""

    config_spec: str
    path: str
    variant: str
    points: list
    seed_list: list
    metrics: list
    fixed: tuple
    baseline: str
    command: str


def _sweep(workdir, plan: _Plan, parallel, vmap, start, stop, report, compilation_cache) -> int:
    config_spec, path, variant, points, seed_list, metrics, fixed, baseline, command = plan
    seeds = len(seed_list)
    manifest = {
        "config": config_spec,
        "command": command,
        "seeds": seed_list,
        "metrics": metrics,
        "points": _manifest_points(points),
        "baseline": baseline,
    }
    with open(os.path.join(workdir, results.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)

    env = compilation_cache_env(workdir) if compilation_cache else ()
    jobs = make_jobs(workdir, path, variant, points, seed_list, fixed, vmap, env)
    runs = sum(len(j.seeds) for j in jobs)
    report(
        f"{len(points)} points x {seeds} seeds: {len(points) * seeds - runs} finished, "
        f"{runs} to run ({len(jobs)} processes, {parallel} at a time) in {workdir}"
    )
    with stop or StopRequest() as stop:
        outcomes = run_jobs(jobs, workdir, parallel, start, stop, report)
    failures = tuple(
        f"{o.job.point.name} seed {','.join(map(str, o.job.seeds))}: {o.message}"
        for o in outcomes
        if o.status == "failed"
    )
    text = write_results(workdir, points, seed_list, metrics, command, failures, baseline)
    report(text.rstrip())
    if stop.requested or any(o.status == "stopped" for o in outcomes):
        report("stopped: rerun the same command to continue the sweep")
        return 1
    if failures:
        report(f"{len(failures)} run(s) failed; the logs are W/<point>/seed<k>/run.log")
        return 1
    return 0


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise SweepError(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    command = shlex.join(["python", "-m", "s2s_jax.studies.sweep", *sys.argv[1:]])
    return sweep(
        FLAGS.config,
        FLAGS.workdir,
        FLAGS.seeds,
        FLAGS.parallel,
        FLAGS.vmap,
        tuple(FLAGS.axis or ()),
        tuple(FLAGS.set or ()),
        command,
        compilation_cache=FLAGS.compilation_cache,
        baseline_flags=tuple(FLAGS.baseline or ()),
    )


if __name__ == "__main__":
    from absl import flags

    from s2s_jax import cli

    flags.DEFINE_string(
        "config",
        None,
        "experiment config FILE or FILE:VARIANT with a `sweep` section",
        required=True,
    )
    flags.DEFINE_string(
        "workdir", None, "sweep directory: W/<point>/seed<k> runs, results.*", required=True
    )
    flags.DEFINE_integer("seeds", None, "seeds 0..N-1 per point (default: config.sweep.seeds)")
    flags.DEFINE_integer("parallel", 1, "processes at a time")
    flags.DEFINE_bool(
        "vmap",
        False,
        "train the seeds of a point together in one vmapped "
        "program (s2s_jax.studies.multiseed) instead of one run.py per seed",
    )
    flags.DEFINE_multi_string(
        "axis", None, "FIELD=V1,V2,...: replaces that field's axis or adds one (repeatable)"
    )
    flags.DEFINE_multi_string(
        "set", None, "FIELD=VALUE for every point, e.g. train.steps=100 (repeatable)"
    )
    flags.DEFINE_multi_string(
        "baseline",
        None,
        "FIELD=VALUE naming the grid point that "
        "results.md compares every other point with, seed by seed "
        "(repeatable; replaces sweep.baseline; 'none': no comparison)",
    )
    flags.DEFINE_bool(
        "compilation_cache",
        True,
        "share compiled steps between the runs through W/xla_cache (see compilation_cache_env)",
    )
    cli.run(main, malloc_default=None)  # bad input (SweepError, GridError): one line, exit 2
