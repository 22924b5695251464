"""K seeds of one experiment trained at once: one jitted train step, vmapped over the seeds.

  python -m s2s_jax.studies.multiseed --config=experiments/bridges.py --seeds=0,1,2 --workdir=runs/dense
  python -m s2s_jax.studies.sweep --config=experiments/bridges.py --vmap --workdir=runs/bridges

A small model leaves most of a CPU idle during one step (small matmuls inside a sequential
scan). Stacking K seeds' parameters, optimizer states, keys and batches on a leading axis and
running `jax.vmap(train_step)` turns K small steps into one K-times wider step, compiled once.

Seed k gets exactly what `run.py --config.train.seed=k` gives it: initial state
train.init_state(net, tx, k), step keys prng.train_key(k) folded with the step inside the
same train.make_train_step, and its own batch stream data.train_iterator(ds, B,
prng.data_seed(k)). The results agree
with K separate runs up to float rounding, since XLA may sum a batched matmul in another order
(tests/test_multiseed.py compares losses and parameters with separate runs).

train_and_evaluate_seeds gives each seed a normal run.py workdir, <workdir>/seed<k>: config.json
(train.seed = k), vocabularies, metrics.jsonl (training rows, validation rows, the final test
row), TensorBoard events and orbax checkpoints. A stopped program therefore resumes (each seed
from its own newest checkpoint; seeds that restored different steps train as separate groups),
run.py can continue or evaluate any seed, and the sweep treats these workdirs like its others.

What does not vmap, or not usefully:
- several devices or hosts: the program runs on one device and needs K times one run's memory;
  a multi-host config is refused, and extra local devices stay idle;
- evaluation runs per seed (evaluation.evaluate reduces on the host): K times one run's cost;
- speed: with the bridges study's model (batch 64, a bidirectional 64-unit encoder) on 2 cores,
  K=4 vmapped seeds train at 0.96-1.01x the speed of 4 sequential runs (61.2 against 63.9 and
  59.2 against 58.5 seed-steps/s, 2026-11-29, AMD EPYC; benchmarks/multiseed.py, each side in
  its own process with its entry point's malloc mode); at the tiny config, where per-op overhead
  dominates, 1.9x. It was 0.76-0.86x until the cause was found: XLA:CPU takes all of a step's
  temporaries as one block, K times one run's (here 28 MB for one seed; 57, 85 and 114 MB for
  K = 2, 3, 4), and glibc serves a block over 64 MB to a worker thread's arena only by a fresh
  mmap(), unmapped again when the step ends, so every vmapped step page-faulted ~26-29k times.
  Hence this entry point's --malloc_tuning default is keep_one_arena (every block from the main
  heap, which keeps it): with `keep` the same benchmark gives 0.81x and 29k faults a step;
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the environment fixes it too (0.98x). Measured and
  not a cause: the decoder's `lax.cond`s, which become selects under vmap (sharing the skip
  decisions across seeds so they stay conds changed nothing). A sweep with --vmap ends sooner
  (3 seeds, 300 steps: 32 s against 40 s): one process starts, loads the data and compiles once;
- a seed whose loss turns non-finite cannot stop alone as run.py would: its rows and checkpoints
  stop at its last good step, the other seeds finish, and the program then exits with an error
  naming it. (Every model variant vmaps: all registry entries are pure JAX, and seeds differ
  only in numbers, never in shapes.)
"""
import contextlib
import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import cli, config_files, data
from s2s_jax.models import model
from s2s_jax.training import (checkpoint, evaluation, parallel, prng, run_log, stopping, train,
                              workdir_lock)
from s2s_jax.data.datasets import SRC_VOCAB_FILE, TGT_VOCAB_FILE
from s2s_jax.data.vocab import SPECIALS
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
    step = train.make_train_step(net, tx, schedule, sp, label_smoothing)
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


def train_seeds(config, seeds: list, steps: int | None = None,
                ds: data.Data | None = None) -> SeedsResult:
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
    net = model.build(train.model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = train.make_optimizer(t)
    step_fn = make_seeds_step(net, tx, config.sampling.schedule, train.schedule_params(config),
                              t.label_smoothing)
    state, keys, batches = init_states(net, tx, seeds), step_keys(seeds), SeedBatches(
        ds, t.batch_size, seeds)
    losses = []
    for _ in range(steps):
        state, metrics = step_fn(state, next(batches), keys)
        losses.append(metrics["loss"])  # [K], read once at the end: no host sync per step
    losses = np.asarray(jax.device_get(losses), np.float64).reshape(steps, len(seeds))
    return SeedsResult(tuple(seeds), state, losses)


# --- Per-seed workdirs: logs, checkpoints, evaluation ---------------------------------------
class _Seed(NamedTuple):
    seed: int
    workdir: str
    log: RunLog
    ckpt: checkpoint.Checkpoints


def _seed_config(config, seed: int):
    c = config.copy_and_resolve_references()
    c.train.seed = seed  # config.json says which seed this workdir holds
    return c


def _train_group(group: list, state, batches: SeedBatches, start: int, step_fn, evaluate,
                 t, stop: StopRequest) -> dict:
    """Trains the seeds of `group` (all restored at step `start`) to t.steps, writing their
    rows and checkpoints; evaluates each on test at the end.

    Returns:
      seed -> result: the final test metrics with `step`, {'stopped_at': step}, or
      {'failed': message}.
    """
    keys = step_keys([s.seed for s in group])
    for s in group:
        s.log.truncate_after(start)
    failed = {}  # index in group -> message
    pending, window = [], []  # device metrics not yet read; host metrics since the last row
    sync_every = max(1, min(t.log_every, 16))  # a host read at least every 16 steps
    clock, clock_step = time.time(), start
    step = start
    while step < t.steps:
        state, metrics = step_fn(state, next(batches), keys)
        step += 1
        pending.append((step, metrics))
        stopping = stop.requested  # read once: see train.train_and_evaluate
        due_eval = step % t.eval_every == 0 or step == t.steps
        due_ckpt = step % t.checkpoint_every == 0 or step == t.steps or stopping
        due_log = step % t.log_every == 0 or step == t.steps
        if step % sync_every == 0 or due_log or due_eval or due_ckpt:
            read = list(zip([n for n, _ in pending], jax.device_get([m for _, m in pending])))
            pending = []
            for n, m in read:
                for i in np.flatnonzero(~np.isfinite(m["loss"])):
                    if i not in failed:
                        failed[i] = (f"seed {group[i].seed}: the loss became "
                                     f"{float(m['loss'][i])} at step {n}; its checkpoints stop "
                                     f"at {group[i].ckpt.steps() or 'none'}")
                        group[i].log.info(failed[i])
            window += read
        alive = [i for i in range(len(group)) if i not in failed]
        if due_log:
            now = time.time()
            for i in alive:
                rows = [(n, {name: v[i] for name, v in m.items()}) for n, m in window]
                group[i].log.train_row(step, rows, now - clock, step - clock_step, t.steps)
            clock, clock_step, window = now, step, []
        eval_metrics = {}
        if due_eval:
            eval_start = time.time()
            for i in alive:
                eval_metrics[i] = evaluate(unstack(state.params, i), "valid")
                group[i].log.eval_row(step, "valid", eval_metrics[i])
            clock += time.time() - eval_start  # steps/s count training time only
        if due_ckpt:
            for i in alive:
                group[i].ckpt.save(step, unstack(state, i), batches.get_state(i),
                                   eval_metrics.get(i))
        if stopping:
            for s in group:
                s.ckpt.wait()
            group[0].log.info(f"stopped: saved checkpoint {step} of seeds "
                              f"{[group[i].seed for i in alive]}; rerun the same command")
            stopped = {"stopped_at": step, "signal": stop.signal_name}
            return {group[i].seed: stopped for i in alive} | {
                group[i].seed: {"failed": msg} for i, msg in failed.items()}
    out = {group[i].seed: {"failed": msg} for i, msg in failed.items()}
    for i in range(len(group)):
        if i in failed:
            continue
        group[i].ckpt.wait()
        test = evaluate(unstack(state.params, i), "test")
        group[i].log.eval_row(t.steps, "test", test)
        out[group[i].seed] = {"step": t.steps, **test}
    return out


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
        raise ValueError("multiseed runs on one device; drop the multi-host flags, or run the "
                         "seeds separately (the sweep without --vmap)")
    if config.train.get("batch_type", "sentences") != "sentences":
        raise ValueError("the vmapped seeds need --config.train.batch_type=sentences (batches by "
                         "tokens differ in shape between seeds); run the seeds separately (the "
                         "sweep without --vmap)")
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


def _train_and_evaluate_seeds(config, seeds: list, dirs: list, device, mesh) -> dict:
    t = config.train
    for seed, d in zip(seeds, dirs):  # before the data writes its vocabularies there
        run_log.check_resumes(d, _seed_config(config, seed))
        train.check_optimizer_resumes(d, t)
        run_log.drop_unvouched(d, (SRC_VOCAB_FILE, TGT_VOCAB_FILE))
    train.schedule_params(config)  # the whole config is checked before anything is written
    smallest = len(SPECIALS) + 1  # stand-in vocabularies: the checks do not depend on them
    model.build(train.model_config(config, smallest, smallest))
    ds = data.load_data(config.data, dirs[0])
    for d in dirs[1:]:  # the vocabularies every workdir holds, so run.py can reuse each alone
        for vocab, name in ((ds.src_vocab, SRC_VOCAB_FILE), (ds.tgt_vocab, TGT_VOCAB_FILE)):
            if not os.path.exists(os.path.join(d, name)):
                vocab.save(os.path.join(d, name))
    net = model.build(train.model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = train.make_optimizer(t)
    step_fn = make_seeds_step(net, tx, config.sampling.schedule, train.schedule_params(config),
                              t.label_smoothing)
    eval_step = jax.jit(evaluation.make_eval_step(net))
    evaluate = lambda params, split: evaluation.evaluate(  # noqa: E731
        eval_step, params, data.eval_batches(ds, split, t.eval_batch_size), ds.tgt_vocab,
        config.data.tokenizer, mesh, t.eval_max_examples)[0]

    runs = []
    for seed, d in zip(seeds, dirs):
        log = RunLog(d)
        log.write_config(_seed_config(config, seed))
        ckpt = checkpoint.Checkpoints(d, t.keep_checkpoints, t.best_metric)
        runs.append(_Seed(seed, d, log, ckpt))
    init = jax.jit(lambda seed: train.init_state(net, tx, seed))
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=jax.sharding.SingleDeviceSharding(device)),
        jax.eval_shape(init, jnp.int32(0)))
    groups = {}  # start step -> [(run, state, data state or None)]
    for run in runs:
        restored = run.ckpt.restore(abstract)
        if restored is None:
            groups.setdefault(0, []).append((run, init(jnp.asarray(run.seed, jnp.int32)), None))
        else:
            state, record, start = restored
            # A checkpoint run.py saved also holds its metrics window; the seeds' rows restart
            # their averages at the restored step.
            data_state, _ = train.from_data_record(record)
            groups.setdefault(start, []).append((run, state, data_state))
            run.log.info(f"seed {run.seed}: resumed from checkpoint {start}")

    stop = StopRequest().install()
    out = {}
    try:
        for start in sorted(groups):
            members = groups[start]
            group = [run for run, _, _ in members]
            batches = SeedBatches(ds, t.batch_size, [run.seed for run in group])
            for i, (_, _, data_state) in enumerate(members):
                if data_state is not None:
                    batches.set_state(i, data_state)
            group[0].log.info(f"{len(group)} seed(s) {[r.seed for r in group]} in one program "
                              f"on {device}, steps {start}..{t.steps}")
            state = stack([s for _, s, _ in members])
            del members, groups[start]  # only the stacked copy stays alive
            out.update(_train_group(group, state, batches, start, step_fn, evaluate, t, stop))
            if stop.requested:
                break
    finally:
        stop.restore()
        for run in runs:
            run.ckpt.wait()
            run.ckpt.close()
            run.log.close()
    failures = [r["failed"] for r in out.values() if "failed" in r]
    if failures:
        raise train.TrainingError("; ".join(failures) + ". The other seeds finished; rerun the "
                                  "failed seed alone with a lower --learning_rate")
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
            "config", config_files.DEFAULT_CONFIG,
            "experiment config file (optionally FILE:variant)")
    flags.DEFINE_string("workdir", None, "holds one run.py workdir per seed: <workdir>/seed<k>",
                        required=True)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds to train together, e.g. 0,1,2")
    # One arena: XLA takes the vmapped step's temporaries as one block, K times one run's, which
    # passes 64 MB (the bridges study at K = 4: 114 MB), and glibc serves a block that big to a
    # worker thread's arena only by a fresh mmap() every step (see the docstring).
    cli.run(main, malloc_default="keep_one_arena")
