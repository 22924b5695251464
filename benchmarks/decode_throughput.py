"""Decoding throughput of s2s_jax: sentences/s of jitted greedy decoding, and of beam search.

  python benchmarks/decode_throughput.py [--bridge=attention] [--batch=64] [--tgt_len=30]

Greedy is `model.decode_greedy` (free-running argmax for --tgt_len steps), jitted once with the
step count static. Beam search is `model.decode_beam` with --beam_size beams (GNMT length
penalty), timed the same way; a model without it reports `"beam": null`. Parameters are random
(an untrained
model decodes for exactly --tgt_len steps, which is what is timed). Each call is blocked on
its result.

Prints one JSON line: for greedy and beam, sentences_per_s (batch x calls / seconds),
median_batch_ms, compile_s; and the settings.
"""

import json
import os
import statistics
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from s2s_jax.models import model  # pylint: disable=g-import-not-at-top

import common  # pylint: disable=g-import-not-at-top

common.define_model_flags()
flags.DEFINE_enum("bridge", "attention", common.BRIDGE_NAMES, "bridge")
flags.DEFINE_integer("beam_size", 5, "K, beams of beam search")
flags.DEFINE_integer("calls", 20, "timed calls of each decoder")
flags.DEFINE_integer("warmup", 2, "untimed calls after compilation")
FLAGS = flags.FLAGS


def _time(fn, *args) -> dict:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    times = []
    for i in range(FLAGS.warmup + FLAGS.calls):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        if i >= FLAGS.warmup:
            times.append(time.perf_counter() - start)
    return {
        "sentences_per_s": round(FLAGS.batch * len(times) / sum(times), 1),
        "median_batch_ms": round(1e3 * statistics.median(times), 2),
        "compile_s": round(compile_s, 3),
    }


def main(argv):
    del argv
    common.tune_malloc()
    cfg = model.ModelConfig.from_experiment(
        src_vocab=FLAGS.vocab,
        tgt_vocab=FLAGS.vocab,
        emb=FLAGS.emb,
        hidden=FLAGS.hidden,
        cell=FLAGS.cell,
        layers=FLAGS.layers,
        bridge=FLAGS.bridge,
        decoder_hidden=common.decoder_hidden(FLAGS.bridge, FLAGS.hidden),
    )
    m = model.build(cfg)
    params = m.init(jax.random.PRNGKey(FLAGS.seed))
    rs = np.random.RandomState(FLAGS.seed)
    inputs = jnp.asarray(rs.randint(4, FLAGS.vocab, (FLAGS.batch, FLAGS.src_len)), jnp.int32)
    lengths = jnp.full((FLAGS.batch,), FLAGS.src_len, jnp.int32)
    steps = FLAGS.tgt_len

    greedy = _time(lambda p, x, n: m.decode_greedy(p, x, n, steps), params, inputs, lengths)
    beam = None  # models without beam search report null
    beam_fn = getattr(m, "decode_beam", None)
    if beam_fn is not None:
        beam = _time(
            lambda p, x, n: beam_fn(p, x, n, steps, FLAGS.beam_size), params, inputs, lengths
        )
        beam["beam_size"] = FLAGS.beam_size
    row = {"greedy": greedy, "beam": beam}
    row.update(
        {
            n: FLAGS[n].value
            for n in (
                "batch",
                "src_len",
                "tgt_len",
                "vocab",
                "emb",
                "hidden",
                "layers",
                "cell",
                "bridge",
                "calls",
                "warmup",
                "malloc_tuning",
            )
        }
    )
    row["threads"] = os.cpu_count()
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
