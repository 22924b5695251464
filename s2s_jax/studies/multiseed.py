r"""K seeds of one experiment trained at once: one jitted train step, vmapped over the seeds.

  python -m s2s_jax.studies.multiseed --config=experiments/bridges.py --seeds=0,1,2 \
      --workdir=runs/dense
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --vmap --workdir=runs/bridges

A small model leaves most of a CPU idle during one step (small matmuls inside a sequential
scan). Stacking K seeds' parameters, optimizer states, keys and batches on a leading axis and
running `jax.vmap(train_step)` turns K small steps into one K-times wider step, compiled once.

Seed k gets exactly what `run.py --config.train.seed=k` gives it: initial state
train.init_state(net, tx, k), step keys prng.train_key(k) folded with the step inside the
same train.make_train_step, and its own batch stream data.train_iterator(ds, B,
prng.data_seed(k)). The results agree with K separate runs up to float rounding, since XLA may
sum a batched matmul in another order (tests/test_multiseed.py compares losses and parameters
with separate runs).

train_and_evaluate_seeds runs the ordinary run's loop (training/loop.py) over the stacked state,
with the ordinary run's set-up, restore and evaluation (train.set_up, train.restore,
train.make_evaluate), and gives each seed a normal run.py workdir, <workdir>/seed<k>:
config.json (train.seed = k), vocabularies, metrics.jsonl (training rows, validation rows, the
final test row), TensorBoard events and orbax checkpoints. A stopped program therefore resumes
(each seed from its own newest checkpoint; seeds that restored different steps train as separate
groups), run.py can continue or evaluate any seed, and the sweep treats these workdirs like its
others.

What does not vmap, or not usefully:
- several devices or hosts: the program runs on one device and needs K times one run's memory;
  a multi-host config is refused, and extra local devices stay idle;
- batches by tokens (`train.batch_type=tokens`): their shapes differ between seeds;
- evaluation runs per seed (evaluation.evaluate reduces on the host): K times one run's cost;
- speed: vmapping pays where per-op overhead dominates (tiny models); once one seed's matmuls
  fill the cores, K seeds cost about K runs' compute, and a sweep with --vmap gains only the one
  start, data load and compile (benchmarks/README.md, "Vmapped seeds"). The vmapped step takes K
  times one run's temporaries as one block, which passes what a glibc thread heap holds, hence
  this entry point's --malloc_tuning default, keep_one_arena (training/host_memory.py);
- a seed whose loss turns non-finite cannot stop alone as run.py would: its rows and checkpoints
  stop at its last good step, the other seeds finish, and the program then exits with an error
  naming it. (Every model variant vmaps: all registry entries are pure JAX, and seeds differ
  only in numbers, never in shapes.)
"""

import contextlib
import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from s2s_jax import cli, config_files, data
from s2s_jax.models import model
from s2s_jax.training import (
    checkpoint,
    loop,
    parallel,
    prng,
    run_log,
    settings,
    stopping,
    train,
    workdir_lock,
)
from s2s_jax.training.run_log import RunLog
from s2s_jax.training.stopping import StopRequest


# --- The vmapped program --------------------------------------------------------------------
def stack(trees: list):
    """K pytrees of the same structure -> one pytree with a leading [K] axis on every leaf."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree, k: int):
    """Seed `k`'s slice of a stacked pytree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[k], tree)


def init_states(net: model.Model, tx, seeds: list) -> train.TrainState:
    """Stacked initial states (leaves [K, ...]); seed k's is train.init_state(net, tx, k).

    One seed at a time, not vmapped: the orthogonal initialiser's QR then runs exactly as in a
    separate run. It happens once, so its cost does not matter.
    """
    init = jax.jit(lambda seed: train.init_state(net, tx, seed))  # compiled once for all seeds
    return stack([init(jnp.asarray(s, jnp.int32)) for s in seeds])


def step_keys(seeds: list) -> jax.Array:
    """Per-seed train-step keys [K, 2]: prng.train_key, as train_and_evaluate uses."""
    return jnp.stack([prng.train_key(s) for s in seeds])


def make_seeds_step(net: model.Model, tx, schedule: str, sp, label_smoothing: float = 0.0):
    """The jitted K-seed step `(states, batches, keys) -> (states, metrics)`.

    states: TrainState with leaves [K, ...]; batches: {name: [K, B, ...]}; keys: [K, 2];
    metrics: {name: [K]}. The states are donated, as in the single-seed step.
    """
    return _vmapped(train.make_train_step(net, tx, schedule, sp, label_smoothing))


def _vmapped(step):
    return jax.jit(jax.vmap(step), donate_argnums=0)


class SeedBatches:
    """One training batch stream per seed, stacked: next() is {name: [K, B, ...]}."""

    def __init__(self, ds: data.Data, batch_size: int, seeds: list):
        self.iterators = [data.train_iterator(ds, batch_size, prng.data_seed(s)) for s in seeds]

    def __next__(self) -> dict:
        batches = [next(it) for it in self.iterators]
        width = max(b["inputs"].shape[1] for b in batches)  # seeds may be in different buckets
        batches = [data.pad_batch(b, width) for b in batches]
        return {name: np.stack([b[name] for b in batches]) for name in batches[0]}  # [K, B, ...]

    def get_state(self, k: int) -> dict:
        return self.iterators[k].get_state()

    def set_state(self, k: int, state: dict) -> None:
        self.iterators[k].set_state(state)


class SeedsResult(NamedTuple):
    seeds: tuple
    state: train.TrainState  # every leaf [K, ...]
    losses: np.ndarray  # [steps, K] training loss of every step


def train_seeds(
    config, seeds: list, steps: int | None = None, ds: data.Data | None = None
) -> SeedsResult:
    """Trains `seeds` of `config` together for `steps` steps, in memory (no files).

    Args:
      config: an experiment config (experiments/*.py).
      seeds: the seeds, e.g. [0, 1, 2].
      steps: steps to run (default config.train.steps); the learning-rate schedule still
        follows config.train.steps, as in a separate run stopped early.
      ds: the loaded data (default: loaded from config.data into a temporary directory).

    Returns:
      The final stacked states and every step's per-seed training loss.
    """
    t = config.train
    steps = t.steps if steps is None else steps
    ds = ds or data.load_data(config.data, None)
    net = model.build(settings.model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = settings.make_optimizer(t)
    step_fn = make_seeds_step(
        net, tx, config.sampling.schedule, settings.schedule_params(config), t.label_smoothing
    )
    state, keys, batches = (
        init_states(net, tx, seeds),
        step_keys(seeds),
        SeedBatches(ds, t.batch_size, seeds),
    )
    losses = []
    for _ in range(steps):
        state, metrics = step_fn(state, next(batches), keys)
        losses.append(metrics["loss"])  # [K], read once at the end: no host sync per step
    losses = np.asarray(jax.device_get(losses), np.float64).reshape(steps, len(seeds))
    return SeedsResult(tuple(seeds), state, losses)


# --- Per-seed workdirs: the one training loop over the stacked state ---------------------------
def _seed_config(config, seed: int):
    c = config.copy_and_resolve_references()
    c.train.seed = seed  # config.json says which seed this workdir holds
    return c


def train_and_evaluate_seeds(config, seeds: list, workdir: str) -> dict:
    """Trains `seeds` of `config` in one vmapped program, each into <workdir>/seed<k>.

    Resumes every seed from its own newest readable checkpoint. Seeds resuming from the same
    step train together; groups that restored different steps run one after another.

    Returns:
      seed -> the final test metrics with `step` (or {'stopped_at': step} after SIGTERM).

    Raises:
      ValueError: a multi-host config, or repeated seeds.
      train.TrainingError: after the other seeds finished, when a seed's loss became
        non-finite.
    """
    if config.parallel.num_processes > 1 or config.parallel.coordinator_address:
        raise ValueError(
            "multiseed runs on one device; drop the multi-host flags, or run the "
            "seeds separately (the sweep without --vmap)"
        )
    if config.train.get("batch_type", "sentences") != "sentences":
        raise ValueError(
            "the vmapped seeds need --config.train.batch_type=sentences (batches by "
            "tokens differ in shape between seeds); run the seeds separately (the "
            "sweep without --vmap)"
        )
    if len(set(seeds)) != len(seeds) or not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds must be distinct, at least 0 and not empty, got {seeds}")
    device = jax.devices()[0]
    mesh = jax.sharding.Mesh(np.array([device]), (parallel.DATA_AXIS,))  # evaluation batches
    dirs = [os.path.join(workdir, f"seed{s}") for s in seeds]  # the sweep's layout
    with contextlib.ExitStack() as locks:  # each seed's workdir, as run.py locks its own
        for d in dirs:
            run_log.make_workdir(d)
            locks.enter_context(workdir_lock.WorkdirLock(d))
        return _train_and_evaluate_seeds(config, seeds, dirs, device, mesh)


def _stacked(members: list, ds: data.Data, batch_size: int) -> tuple:
    """(runs, stacked state, their batch streams, their metrics windows) of a group's
    [(run, train.Restored)]; once it returns, only the stacked copy of the states stays alive."""
    batches = SeedBatches(ds, batch_size, [run.seed for run, _ in members])
    for i, (_, restored) in enumerate(members):
        if restored.iterator is not None:
            batches.set_state(i, restored.iterator)
    return (
        [run for run, _ in members],
        stack([r.state for _, r in members]),
        batches,
        [r.window for _, r in members],
    )


def _train_and_evaluate_seeds(config, seeds: list, dirs: list, device, mesh) -> dict:
    t = config.train
    configs = [_seed_config(config, seed) for seed in seeds]
    ds, net, tx, step = train.set_up(config, dirs, configs)
    step_fn = _vmapped(step)
    evaluate = train.make_evaluate(config, net, ds, mesh, t.eval_batch_size)
    runs = [
        loop.Run(seed, RunLog(d), checkpoint.Checkpoints(d, t.keep_checkpoints, t.best_metric))
        for seed, d in zip(seeds, dirs)
    ]
    out = {}
    with loop.closing(runs):
        init = jax.jit(lambda seed: train.init_state(net, tx, seed))
        groups = {}  # start step -> [(run, train.Restored)]
        for run, c in zip(runs, configs):
            restored = train.restore(run.ckpt, net, tx, jax.sharding.SingleDeviceSharding(device))
            run.log.write_config(c)  # after the restore: a checkpoint it refused keeps its config
            if restored is None:
                restored = train.Restored(init(jnp.asarray(run.seed, jnp.int32)), 0, None, [])
            else:
                logging.info("resumed from checkpoint %d in %s", restored.step, run.ckpt.directory)
            groups.setdefault(restored.step, []).append((run, restored))
        del restored
        stop = StopRequest().install()
        try:
            for start in sorted(groups):
                group, state, batches, windows = _stacked(groups.pop(start), ds, t.batch_size)
                group[0].log.info(
                    f"{len(group)} seed(s) {[r.seed for r in group]} in one "
                    f"program on {device}, steps {start}..{t.steps}"
                )
                program = loop.Program(
                    step=step_fn,
                    keys=step_keys([r.seed for r in group]),
                    next_batch=batches.__next__,
                    data_state=batches.get_state,
                    part=unstack,
                    evaluate=evaluate,
                )
                results, _ = loop.train_runs(group, program, state, start, windows, t, stop)
                del state
                out.update({run.seed: r for run, r in zip(group, results)})
                if any("stopped_at" in r for r in results):
                    break
        finally:
            stop.restore()
    failures = [r["failed"] for r in out.values() if "failed" in r]
    if failures:
        raise train.TrainingError(
            "; ".join(failures) + ". The other seeds finished; rerun the "
            "failed seed alone with a lower --learning_rate"
        )
    return out


# --- Command line ---------------------------------------------------------------------------
def main(argv):
    from absl import flags

    from s2s_jax.training import run_log

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    run_log.quiet_libraries()
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        raise ValueError(f"--seeds must be integers like 0,1,2, got {FLAGS.seeds}") from None
    with cli.flag_errors():  # a --config file that failed to load raises when first read
        config = FLAGS.config.copy_and_resolve_references()
    result = train_and_evaluate_seeds(config, seeds, FLAGS.workdir)
    print(json.dumps({f"seed{k}": v for k, v in result.items()}), flush=True)
    # 143 or 130 after a stop, as run.py (the seeds stop together); 0 when they finished.
    return max(stopping.exit_status(r) for r in result.values())


if __name__ == "__main__":
    from absl import flags
    from ml_collections import config_flags

    with cli.flag_errors():  # it applies the --config.FIELD overrides of sys.argv already
        config_flags.DEFINE_config_file(
            "config",
            config_files.DEFAULT_CONFIG,
            "experiment config file (optionally FILE:variant)",
        )
    flags.DEFINE_string(
        "workdir", None, "holds one run.py workdir per seed: <workdir>/seed<k>", required=True
    )
    flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds to train together, e.g. 0,1,2")
    # One arena: XLA takes the vmapped step's temporaries as one block, K times one run's, which
    # passes the 64 MB a glibc thread heap holds, and glibc serves a block that big to a worker
    # thread's arena only by a fresh mmap() every step (training/host_memory.py).
    cli.run(main, malloc_default="keep_one_arena")
