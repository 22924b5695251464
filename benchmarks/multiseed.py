"""K seeds in one vmapped program (s2s_jax.studies.multiseed) against K sequential runs, same steps.

  python benchmarks/multiseed.py [--config=experiments/bridges.py] [--k=4] [--steps=100]

Both sides run train.make_train_step on the embedded task's real batches, seed k reading its
own stream data.train_iterator(ds, B, k): sequentially, one compiled single-seed step over
seed 0, then seed 1, ...; vmapped, multiseed.make_seeds_step over all K at once. Each side runs
in a fresh process with its own entry point's malloc mode (run.py's `keep` for the sequential
side, s2s_jax.studies.multiseed's `keep_one_arena` for the vmapped one: glibc's settings are per
process), alternating A B A B for --repeats rounds; times are medians. Each program is compiled
ahead of time (compile_s, reported apart: K separate processes would each compile once more),
batches are built before the clock starts, and a side's time ends when its last loss is on the
host. The per-seed losses of the two sides are compared as a check that both did the same work.

Prints one JSON line: k, steps, sequential_s, vmapped_s, speedup (sequential / vmapped),
sequential_seed_steps_per_s, vmapped_seed_steps_per_s, sequential_compile_s, vmapped_compile_s,
the malloc modes, the step's minor page faults of each side, max_loss_diff, the per-repeat
times, and the model settings.
"""

import json
import os
import resource
import statistics
import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import numpy as np  # noqa: E402

from s2s_jax import data  # noqa: E402
from s2s_jax.models import model
from s2s_jax.studies import multiseed
from s2s_jax.training import host_memory, prng, settings, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file(
    "config",
    os.path.join(_ROOT, "experiments", "bridges.py"),
    "experiment config (its model, batch size and schedule)",
)
flags.DEFINE_integer("k", 4, "seeds")
flags.DEFINE_integer("steps", 100, "training steps per seed")
flags.DEFINE_integer("repeats", 2, "alternating rounds of (sequential, vmapped)")
flags.DEFINE_enum(
    "sequential_malloc_tuning",
    "keep",
    list(host_memory.MODES),
    "s2s_jax.training.host_memory mode of the sequential side's process (run.py's default)",
)
flags.DEFINE_enum(
    "vmapped_malloc_tuning",
    "keep_one_arena",
    list(host_memory.MODES),
    "s2s_jax.training.host_memory mode of the vmapped side's process (s2s_jax.studies.multiseed's "
    "default)",
)
flags.DEFINE_enum(
    "side",
    None,
    ["sequential", "vmapped"],
    "internal: run one side once in this process and print its JSON",
)
flags.DEFINE_integer("timeout", 1800, "seconds before one side's run is abandoned")
FLAGS = flags.FLAGS


def _timed_compile(fn, *args):
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run_side(side: str) -> dict:
    """One side, once: compile, then FLAGS.steps steps of every seed; time, faults, losses."""
    config, k, steps = FLAGS.config, FLAGS.k, FLAGS.steps
    t = config.train
    ds = data.load_data(config.data, None)
    net = model.build(settings.model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = settings.make_optimizer(t)
    schedule, sp = config.sampling.schedule, settings.schedule_params(config)
    seeds = list(range(k))
    per_seed = []  # [K][steps] batch dicts [B, ...]
    for seed in seeds:
        it = data.train_iterator(ds, t.batch_size, prng.data_seed(seed))
        per_seed.append([next(it) for _ in range(steps)])
    keys = multiseed.step_keys(seeds)  # [K, 2]

    if side == "sequential":
        init_one = jax.jit(lambda seed: train.init_state(net, tx, seed))
        step, compile_s = _timed_compile(
            jax.jit(
                train.make_train_step(net, tx, schedule, sp, t.label_smoothing), donate_argnums=0
            ),
            init_one(0),
            per_seed[0][0],
            keys[0],
        )
        states = jax.block_until_ready([init_one(seed) for seed in seeds])
        faults, start = _faults(), time.perf_counter()
        losses = []
        for s, state in zip(seeds, states):
            seed_losses = []
            for batch in per_seed[s]:
                state, metrics = step(state, batch, keys[s])
                seed_losses.append(metrics["loss"])
            losses.append(seed_losses)
        losses = np.asarray(jax.device_get(losses)).T  # [steps, K]
    else:
        stacked = [
            {name: np.stack([per_seed[s][i][name] for s in seeds]) for name in per_seed[0][0]}
            for i in range(steps)
        ]  # [steps] of [K, B, ...]
        step, compile_s = _timed_compile(
            multiseed.make_seeds_step(net, tx, schedule, sp, t.label_smoothing),
            multiseed.init_states(net, tx, seeds),
            stacked[0],
            keys,
        )
        state = jax.block_until_ready(multiseed.init_states(net, tx, seeds))
        faults, start = _faults(), time.perf_counter()
        losses = []
        for batch in stacked:
            state, metrics = step(state, batch, keys)
            losses.append(metrics["loss"])
        losses = np.asarray(jax.device_get(losses))  # [steps, K]
    seconds = time.perf_counter() - start
    return {
        "side": side,
        "seconds": seconds,
        "compile_s": compile_s,
        "faults_per_step": (_faults() - faults) / steps,
        "losses": losses.tolist(),
    }


def _spawn(side: str) -> dict:
    mode = FLAGS[f"{side}_malloc_tuning"].value
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        f"--side={side}",
        f"--k={FLAGS.k}",
        f"--steps={FLAGS.steps}",
        f"--{side}_malloc_tuning={mode}",
    ]
    cmd += [a for a in sys.argv[1:] if a.startswith("--config")]
    row = common.run_subprocess(cmd, FLAGS.timeout)
    if "error" in row:
        raise RuntimeError(f"the {side} side failed: {row['error']}")
    return row


def main(argv):
    del argv
    if FLAGS.side:  # a child: one side, once
        host_memory.keep_freed_memory(FLAGS[f"{FLAGS.side}_malloc_tuning"].value)
        print(json.dumps(run_side(FLAGS.side)), flush=True)
        return
    config, k, steps = FLAGS.config, FLAGS.k, FLAGS.steps
    rows = {"sequential": [], "vmapped": []}
    for _ in range(FLAGS.repeats):
        for side in rows:
            rows[side].append(_spawn(side))
    seq = statistics.median(r["seconds"] for r in rows["sequential"])
    vm = statistics.median(r["seconds"] for r in rows["vmapped"])
    diff = max(
        float(np.max(np.abs(np.asarray(a["losses"]) - np.asarray(b["losses"]))))
        for a, b in zip(rows["sequential"], rows["vmapped"])
    )
    t = config.train
    print(
        json.dumps(
            {
                "k": k,
                "steps": steps,
                "sequential_s": round(seq, 3),
                "vmapped_s": round(vm, 3),
                "speedup": round(seq / vm, 3),
                "sequential_seed_steps_per_s": round(k * steps / seq, 1),
                "vmapped_seed_steps_per_s": round(k * steps / vm, 1),
                "sequential_compile_s": round(rows["sequential"][0]["compile_s"], 2),
                "vmapped_compile_s": round(rows["vmapped"][0]["compile_s"], 2),
                "sequential_malloc_tuning": FLAGS.sequential_malloc_tuning,
                "vmapped_malloc_tuning": FLAGS.vmapped_malloc_tuning,
                "sequential_faults_per_step": round(rows["sequential"][0]["faults_per_step"]),
                "vmapped_faults_per_step": round(rows["vmapped"][0]["faults_per_step"]),
                "max_loss_diff": diff,
                "sequential_runs_s": [round(r["seconds"], 3) for r in rows["sequential"]],
                "vmapped_runs_s": [round(r["seconds"], 3) for r in rows["vmapped"]],
                "settings": {
                    "bridge": config.model.bridge,
                    "cell": config.model.cell,
                    "emb": config.model.emb,
                    "hidden": config.model.hidden,
                    "bidirectional": config.model.bidirectional,
                    "batch_size": t.batch_size,
                    "max_len": config.data.max_len,
                    "schedule": config.sampling.schedule,
                    "sampling_probability_cap": config.sampling.probability,
                    "devices": jax.device_count(),
                    "backend": jax.default_backend(),
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    app.run(main)
