"""K seeds in one vmapped program (s2s_jax.multiseed) against K sequential runs, same steps.

  python benchmarks/multiseed.py [--config=experiments/bridges.py] [--k=4] [--steps=100]

Both sides run train.make_train_step on the embedded task's real batches, seed k reading its
own stream data.train_iterator(ds, B, k): sequentially, one compiled single-seed step over
seed 0, then seed 1, ...; vmapped, multiseed.make_seeds_step over all K at once. Each program is
compiled ahead of time (compile_s, reported apart: K separate processes would each compile once
more), batches are built before the clock starts, and a side's time ends when its last loss is
on the host. The sides alternate (A B A B) for --repeats rounds; times are medians. The per-seed
losses of the two sides are compared as a check that both did the same work.

Prints one JSON line: k, steps, sequential_s, vmapped_s, speedup (sequential / vmapped),
sequential_seed_steps_per_s, vmapped_seed_steps_per_s, sequential_compile_s, vmapped_compile_s,
max_loss_diff, the per-repeat times, and the model settings.
"""
import json
import os
import statistics
import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import numpy as np  # noqa: E402

from s2s_jax import data, host_memory, model, multiseed, train  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file("config", os.path.join(_ROOT, "experiments", "bridges.py"),
                                "experiment config (its model, batch size and schedule)")
flags.DEFINE_integer("k", 4, "seeds")
flags.DEFINE_integer("steps", 100, "training steps per seed")
flags.DEFINE_integer("repeats", 2, "alternating rounds of (sequential, vmapped)")
flags.DEFINE_enum("malloc_tuning", "keep", list(host_memory.MODES),
                  "s2s_jax.host_memory mode for the whole process (both sides); keep is the "
                  "default of run.py and s2s_jax.multiseed")
FLAGS = flags.FLAGS


def _timed_compile(fn, *args):
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def main(argv):
    del argv
    host_memory.keep_freed_memory(FLAGS.malloc_tuning)
    config, k, steps = FLAGS.config, FLAGS.k, FLAGS.steps
    t = config.train
    ds = data.load_data(config.data, None)
    net = model.build(train.model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = train.make_optimizer(t)
    schedule, sp = config.sampling.schedule, train.schedule_params(config)
    seeds = list(range(k))
    per_seed = []  # [K][steps] batch dicts [B, ...]
    for seed in seeds:
        it = data.train_iterator(ds, t.batch_size, seed)
        per_seed.append([next(it) for _ in range(steps)])
    stacked = [{name: np.stack([per_seed[s][i][name] for s in seeds]) for name in per_seed[0][0]}
               for i in range(steps)]  # [steps] of [K, B, ...]
    keys = multiseed.step_keys(seeds)  # [K, 2]

    init_one = jax.jit(lambda seed: train.init_state(net, tx, seed))
    single, single_compile = _timed_compile(
        jax.jit(train.make_train_step(net, tx, schedule, sp, t.label_smoothing),
                donate_argnums=0), init_one(0), per_seed[0][0], keys[0])
    vmapped, vmapped_compile = _timed_compile(
        multiseed.make_seeds_step(net, tx, schedule, sp, t.label_smoothing),
        multiseed.init_states(net, tx, seeds), stacked[0], keys)

    def sequential():
        states = [init_one(seed) for seed in seeds]
        jax.block_until_ready(states)
        start = time.perf_counter()
        losses = []
        for s, state in zip(seeds, states):
            seed_losses = []
            for batch in per_seed[s]:
                state, metrics = single(state, batch, keys[s])
                seed_losses.append(metrics["loss"])
            losses.append(seed_losses)
        losses = np.asarray(jax.device_get(losses)).T  # [steps, K]
        return time.perf_counter() - start, losses

    def together():
        state = jax.block_until_ready(multiseed.init_states(net, tx, seeds))
        start = time.perf_counter()
        losses = []
        for batch in stacked:
            state, metrics = vmapped(state, batch, keys)
            losses.append(metrics["loss"])
        losses = np.asarray(jax.device_get(losses))  # [steps, K]
        return time.perf_counter() - start, losses

    seq_times, vmap_times, diff = [], [], 0.0
    for _ in range(FLAGS.repeats):
        seq_s, seq_losses = sequential()
        vmap_s, vmap_losses = together()
        seq_times.append(seq_s)
        vmap_times.append(vmap_s)
        diff = max(diff, float(np.max(np.abs(seq_losses - vmap_losses))))
    seq, vm = statistics.median(seq_times), statistics.median(vmap_times)
    print(json.dumps({
        "k": k, "steps": steps,
        "sequential_s": round(seq, 3), "vmapped_s": round(vm, 3), "speedup": round(seq / vm, 3),
        "sequential_seed_steps_per_s": round(k * steps / seq, 1),
        "vmapped_seed_steps_per_s": round(k * steps / vm, 1),
        "sequential_compile_s": round(single_compile, 2),
        "vmapped_compile_s": round(vmapped_compile, 2),
        "max_loss_diff": diff,
        "malloc_tuning": FLAGS.malloc_tuning,
        "sequential_runs_s": [round(x, 3) for x in seq_times],
        "vmapped_runs_s": [round(x, 3) for x in vmap_times],
        "settings": {"bridge": config.model.bridge, "cell": config.model.cell,
                     "emb": config.model.emb, "hidden": config.model.hidden,
                     "bidirectional": config.model.bidirectional, "batch_size": t.batch_size,
                     "max_len": config.data.max_len, "schedule": schedule,
                     "sampling_probability_cap": config.sampling.probability,
                     "devices": jax.device_count(), "backend": jax.default_backend()},
    }), flush=True)


if __name__ == "__main__":
    app.run(main)
