"""Training throughput of s2s_jax: full jitted train steps on random tokens.

  python benchmarks/train_throughput.py [--bridge=dense] [--sampling_prob=0.25] [--steps=20]

One step is forward (model.apply with scheduled sampling at --sampling_prob, passed as a traced
value as a schedule would; 0 as teacher_forcing=True, as train.py runs a schedule capped at 0),
s2s_jax.training.losses.cross_entropy on its logits, backward, and an optax adam update, jitted
once with
the state donated. The step is compiled ahead of time (compile_s is
trace + XLA compile; lower_s the trace and lowering alone) and then called as that executable, so
any recompilation would be an error.
After --warmup steps, --steps steps are timed one by one, each blocked on its result.

Prints one JSON line: tokens_per_s (batch x tgt_len x steps / seconds), median_step_ms,
compile_s, param_count, gflop_per_step (analytic model matmul FLOPs of forward + backward, see
common.py), matmul_peak_gflops (a timed float32 2048x2048 matmul on this machine, best of
10 before the model is built and 10 after the timed steps),
peak_fraction (gflop_per_step / median step time / peak), what the compiled step's optimised
HLO holds (common.hlo_summary: loops, fusions, matmuls) and the settings.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import optax  # pylint: disable=g-import-not-at-top

from s2s_jax.models import bridges, cells, model  # pylint: disable=g-import-not-at-top
from s2s_jax.training import losses, prng

import common  # pylint: disable=g-import-not-at-top

common.define_flags()
flags.DEFINE_float("learning_rate", 1e-3, "adam learning rate")
FLAGS = flags.FLAGS


def matmul_peak_gflops(dtype: str = "float32", n: int = 0, repeats: int = 10) -> float:
    """Best-of-`repeats` n x n matmul rate in `dtype`, in GFLOP/s (n = 0: 2048 on a CPU, 8192
    on an accelerator, big enough to reach its rate)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def model_config() -> model.ModelConfig:
    return model.ModelConfig.from_experiment(
        src_vocab=FLAGS.vocab,
        tgt_vocab=FLAGS.vocab,
        emb=FLAGS.emb,
        hidden=FLAGS.hidden,
        cell=FLAGS.cell,
        layers=FLAGS.layers,
        bridge=FLAGS.bridge,
        decoder_hidden=common.decoder_hidden(FLAGS.bridge, FLAGS.hidden, FLAGS.decoder_hidden),
        attention_type=FLAGS.attention_type,
        sample_from=FLAGS.sample_from,
        precision=FLAGS.precision,
    )


def make_batches(count: int) -> list:
    rs = np.random.RandomState(FLAGS.seed)
    out = []
    for _ in range(count):
        inputs, targets = common.random_token_arrays(
            rs, FLAGS.batch, FLAGS.src_len, FLAGS.tgt_len, FLAGS.vocab
        )
        out.append(
            {
                "inputs": jnp.asarray(inputs),
                "targets": jnp.asarray(targets),
                "inputs_len": jnp.full((FLAGS.batch,), FLAGS.src_len, jnp.int32),
                "targets_len": jnp.full((FLAGS.batch,), FLAGS.tgt_len, jnp.int32),
            }
        )
    return out


def make_train_step(m: model.Model, tx, traces: list):
    def train_step(state, batch, rng, probability):
        traces.append(1)  # runs once per trace: the executable must be reused for every step
        params, opt_state, step = state
        rng = jax.random.fold_in(rng, step)

        def loss_fn(p):
            # As train.py: a schedule capped at 0 is teacher forcing, stated when tracing.
            out = m.apply(
                p, batch, rng, probability, train=True, teacher_forcing=FLAGS.sampling_prob == 0.0
            )
            return losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, step + 1), loss

    return jax.jit(train_step, donate_argnums=0)


def main(argv):
    del argv
    common.tune_malloc()
    peak_before = matmul_peak_gflops(FLAGS.precision)
    assert set(common.BRIDGE_COSTS) == set(bridges.BRIDGES), "update common.BRIDGE_COSTS"
    assert set(common.CELL_NAMES) == set(cells.CELLS), "update common.CELL_NAMES"
    m = model.build(model_config())
    params = m.init(prng.init_key(FLAGS.seed))
    param_count = sum(x.size for x in jax.tree_util.tree_leaves(params))
    tx = optax.adam(FLAGS.learning_rate)
    state = (params, tx.init(params), jnp.zeros((), jnp.int32))
    batches = make_batches(4)
    rng = prng.train_key(FLAGS.seed)
    probability = jnp.float32(FLAGS.sampling_prob)
    traces = []
    step_fn = make_train_step(m, tx, traces)

    start = time.perf_counter()
    lowered = step_fn.lower(state, batches[0], rng, probability)
    lower_s = time.perf_counter() - start
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start

    times = []
    for i in range(FLAGS.warmup + FLAGS.steps):
        if i == FLAGS.warmup:
            usage = common.process_usage()
        start = time.perf_counter()
        state, loss = compiled(state, batches[i % len(batches)], rng, probability)
        loss.block_until_ready()
        if i >= FLAGS.warmup:
            times.append(time.perf_counter() - start)
    usage = tuple(b - a for a, b in zip(usage, common.process_usage()))
    loss = float(loss)
    if not np.isfinite(loss):
        raise RuntimeError(f"the loss is not finite: {loss}")
    # The better of two windows: one measured during a busy moment of a shared machine would
    # make the step look closer to the peak than it is.
    peak = max(peak_before, matmul_peak_gflops(FLAGS.precision))
    common.report(
        "jax",
        times,
        compile_s,
        param_count,
        peak,
        usage,
        traces=len(traces),
        lower_s=round(lower_s, 3),
        **common.hlo_summary(compiled.as_text()),
        final_loss=round(loss, 4),
        threads=os.cpu_count(),
        device=jax.devices()[0].device_kind,
        jax_version=jax.__version__,
    )


if __name__ == "__main__":
    app.run(main)
