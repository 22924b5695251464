"""Training speed on text whose lengths vary: real (non-pad) target tokens/s, side by side.

  pip install -r benchmarks/requirements.txt    # torch, only for the PyTorch side
  python benchmarks/real_length.py                                     # all sides, alternating
  python benchmarks/real_length.py --sides=fixed,buckets --sampling_prob=0 --rounds=3
  python benchmarks/real_length.py --train_file=train.tsv             # your own parallel text

The data is the embedded translation-like task at real-text shapes (experiments/default.py:
translate: 29k pairs, 3..45 words, mean 13.7; no download), or a `source<TAB>target` file. The
model is the issue's: a bidirectional LSTM encoder (--hidden per direction), Bahdanau attention,
an LSTM decoder of twice that width, scheduled sampling at --sampling_prob (argmax or a sampled
token, --sample_from). Sides, each run in its own subprocess, alternating A B C A B C:
- fixed:   s2s_jax with every batch [B, max_len] (data.buckets='');
- buckets: s2s_jax with shape buckets (data.buckets='auto': multiples of 8 up to max_len);
- tokens:  buckets and batches by a token budget (train.batch_type=tokens, --token_budget);
- torch:   the same model the usual PyTorch way for variable lengths: each batch padded to its
  own longest source and target, pack_padded_sequence for the encoder, masked attention, a
  Python loop of LSTMCells with the draws, masked cross-entropy; the same batches (the fixed
  pipeline's, cut to their longest).
Every side first runs each of its shapes once (`compile_s`: all buckets compiled; PyTorch
compiles nothing), then times --steps steps. One JSON line per run, then one summary line with
the medians and the ratios to `fixed` and to `torch`; the CPU model is in every line.
"""

import json
import os
import statistics
import sys
import time

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402  pylint: disable=g-import-not-at-top

SIDES = ("fixed", "buckets", "tokens", "torch")
flags.DEFINE_list("sides", list(SIDES), f"sides to compare, of {SIDES}")
flags.DEFINE_string("side", "", "run one side in this process (what the comparison calls)")
flags.DEFINE_integer("rounds", 2, "runs of every side (alternating)")
flags.DEFINE_integer("steps", 20, "timed steps a run")
flags.DEFINE_integer("batch_size", 128, "sentences a batch (fixed, buckets, torch)")
flags.DEFINE_integer(
    "token_budget",
    0,
    "tokens side: padded target positions a batch; 0 = "
    "batch_size x (mean target length + 1) x 1.5, about as many sentences",
)
flags.DEFINE_integer("hidden", 256, "encoder units per direction (decoder: twice)")
flags.DEFINE_integer("emb", 256, "embedding size")
flags.DEFINE_float("sampling_prob", 0.25, "scheduled sampling probability (0: teacher forcing)")
flags.DEFINE_enum("sample_from", "argmax", ["argmax", "categorical"], "fed-back token")
flags.DEFINE_string("train_file", "", "a source<TAB>target file instead of the embedded task")
flags.DEFINE_integer("max_len", 64, "longest side kept")
flags.DEFINE_string("data_dir", "/tmp/s2s_real_length_tfds", "where the task is prepared")
flags.DEFINE_integer("timeout", 1800, "seconds before one run is abandoned")
FLAGS = flags.FLAGS


def _config(side: str):
    from s2s_jax.config_files import load_config_file  # pylint: disable=g-import-outside-toplevel

    c = load_config_file(os.path.join(ROOT, "experiments", "default.py"), "translate")
    c.data.update(
        data_dir=FLAGS.data_dir,
        max_len=FLAGS.max_len,
        buckets="" if side in ("fixed", "torch") else "auto",
    )
    if FLAGS.train_file:
        c.data.update(
            dataset="parallel_text", train_file=FLAGS.train_file, test_file=FLAGS.train_file
        )
    c.model.update(
        emb=FLAGS.emb,
        hidden=FLAGS.hidden,
        bidirectional=True,
        bridge="attention",
        attention_type="bahdanau",
        sample_from=FLAGS.sample_from,
    )
    c.train.update(batch_size=FLAGS.batch_size, batch_type="sentences")
    return c


def _batches(ds, side: str, count: int):
    from s2s_jax import data  # pylint: disable=g-import-outside-toplevel
    from s2s_jax.training import prng

    batch_size, batch_type = FLAGS.batch_size, "sentences"
    if side == "tokens":
        mean = float(np.mean(ds.splits["train"].targets_len)) + 1
        batch_size = FLAGS.token_budget or int(FLAGS.batch_size * mean * 1.5)
        batch_type = "tokens"
    it = data.train_iterator(ds, batch_size, prng.data_seed(0), batch_type=batch_type)
    return [next(it) for _ in range(count)]


def _shape_examples(batches):
    """One batch of every shape, in the order first seen."""
    seen = {}
    for b in batches:
        seen.setdefault(b["inputs"].shape, b)
    return list(seen.values())


def _cut(batch):
    """A fixed-shape batch cut to its longest source and target (the PyTorch user's padding)."""
    s, t = int(batch["inputs_len"].max()), int(batch["targets_len"].max())
    return dict(batch, inputs=batch["inputs"][:, :s], targets=batch["targets"][:, :t])


def run_jax(side: str) -> dict:
    from s2s_jax.training import host_memory  # pylint: disable=g-import-outside-toplevel

    host_memory.keep_freed_memory("keep_one_arena")  # before JAX starts its threads
    import jax  # pylint: disable=g-import-outside-toplevel

    from s2s_jax import data  # noqa  pylint: disable=g-import-outside-toplevel
    from s2s_jax.models import model, sampling
    from s2s_jax.training import prng, settings, train

    c = _config(side)
    ds = data.load_data(c.data, None)
    net = model.build(settings.model_config(c, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = settings.make_optimizer(c.train)
    sp = sampling.ScheduleParams(probability=FLAGS.sampling_prob)
    traces = []
    inner = train.make_train_step(net, tx, "constant", sp)

    def counted(state, batch, rng):
        traces.append(batch["inputs"].shape)
        return inner(state, batch, rng)

    step = jax.jit(counted, donate_argnums=0)
    state = train.init_state(net, tx, 0)
    rng = prng.train_key(0)
    timed = _batches(ds, side, FLAGS.steps + 200)
    start = time.perf_counter()
    for batch in _shape_examples(timed):  # every bucket the timed steps use, compiled
        state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics["loss"])
    compile_s = time.perf_counter() - start
    compiled = len(traces)
    real = padded = 0
    times = []
    for batch in timed[: FLAGS.steps]:
        t0 = time.perf_counter()
        state, metrics = step(state, batch, rng)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
        real += int(batch["targets_len"].sum())
        padded += batch["targets"].size
    return _row(side, times, real, padded, compile_s, compiled, len(traces) - compiled)


def run_torch() -> dict:
    from s2s_jax.training import host_memory  # pylint: disable=g-import-outside-toplevel

    host_memory.keep_freed_memory("keep_one_arena")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as torch_baseline.py: no spinning
    import torch  # pylint: disable=g-import-outside-toplevel
    import torch_real_length  # pylint: disable=g-import-outside-toplevel

    from s2s_jax import data  # pylint: disable=g-import-outside-toplevel

    torch.set_num_threads(2)
    torch.manual_seed(0)
    c = _config("torch")
    ds = data.load_data(c.data, None)
    net = torch_real_length.Seq2Seq(len(ds.src_vocab), len(ds.tgt_vocab), FLAGS.emb, FLAGS.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = [_cut(b) for b in _batches(ds, "fixed", FLAGS.steps + 1)]
    tensor = lambda b: {k: torch.from_numpy(v.astype(np.int64)) for k, v in b.items()}  # noqa
    torch_real_length.train_step(
        net, opt, tensor(batches[0]), FLAGS.sampling_prob, FLAGS.sample_from
    )  # warm-up; nothing is compiled
    real = padded = 0
    times = []
    for batch in batches[1:]:
        t0 = time.perf_counter()
        torch_real_length.train_step(
            net, opt, tensor(batch), FLAGS.sampling_prob, FLAGS.sample_from
        )
        times.append(time.perf_counter() - t0)
        real += int(batch["targets_len"].sum())
        padded += batch["targets"].size
    return _row("torch", times, real, padded, 0.0, 0, 0)


def _row(side, times, real, padded, compile_s, compiled, recompiled) -> dict:
    total = sum(times)
    return {
        "side": side,
        "real_tokens_per_s": real / total,
        "padded_share": 1 - real / padded,
        "median_step_ms": 1e3 * statistics.median(times),
        "steps": len(times),
        "compile_s": compile_s,
        "shapes_compiled": compiled,
        "compiles_after_warmup": recompiled,
        "sampling_prob": FLAGS.sampling_prob,
        "sample_from": FLAGS.sample_from,
        "batch_size": FLAGS.batch_size,
        "cpu": common.cpu_model(),
    }


def compare() -> None:
    rows = {side: [] for side in FLAGS.sides}
    passed = [
        f"--{name}={getattr(FLAGS, name)}"
        for name in (
            "steps",
            "batch_size",
            "token_budget",
            "hidden",
            "emb",
            "sampling_prob",
            "sample_from",
            "train_file",
            "max_len",
            "data_dir",
        )
    ]
    for _ in range(FLAGS.rounds):
        for side in FLAGS.sides:
            row = common.run_subprocess(
                [sys.executable, os.path.abspath(__file__), f"--side={side}", *passed],
                FLAGS.timeout,
            )
            print(json.dumps(row), flush=True)
            if "real_tokens_per_s" in row:
                rows[side].append(row["real_tokens_per_s"])
    medians = {side: statistics.median(v) for side, v in rows.items() if v}
    summary = {
        "real_tokens_per_s": medians,
        "cpu": common.cpu_model(),
        "sampling_prob": FLAGS.sampling_prob,
        "sample_from": FLAGS.sample_from,
    }
    for base in ("fixed", "torch"):
        if base in medians:
            summary[f"over_{base}"] = {s: v / medians[base] for s, v in medians.items()}
    print(json.dumps(summary), flush=True)


def main(argv):
    del argv
    if not FLAGS.side:
        compare()
    elif FLAGS.side == "torch":
        print(json.dumps(run_torch()), flush=True)
    elif FLAGS.side in SIDES:
        print(json.dumps(run_jax(FLAGS.side)), flush=True)
    else:
        raise SystemExit(f"error: unknown --side={FLAGS.side}; choose one of {SIDES}")


if __name__ == "__main__":
    app.run(main)
