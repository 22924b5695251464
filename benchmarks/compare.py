"""s2s_jax against the PyTorch baseline, side by side, at the same settings.

  pip install -r benchmarks/requirements.txt
  python benchmarks/compare.py [--bridges=dense,attention] [--sampling_probs=0.25,0]
      [--sample_froms=argmax,categorical] [--precisions=float32,bfloat16]
      [--torch_categoricals=gumbel,inverse_cdf,multinomial] [--rounds=3]

For every bridge, sampling probability and (where p > 0) feedback, runs train_throughput.py and
torch_baseline.py alternately, every precision within each round (jax f32, torch f32, jax bf16,
torch bf16, then again), --rounds times, every run a fresh subprocess with the same flags, so that
slow phases of a shared machine hit all sides alike. A categorical setting runs the PyTorch side
once per --torch_categoricals sampler and compares s2s_jax with the fastest of them, so that no
ratio rests on a slow primitive of PyTorch.

Prints one JSON line per setting and precision: the median tokens/s of each side and their ratio
(jax / torch), every run's tokens/s, the median CPU time per step (a second view that other work
on the machine disturbs less), each PyTorch sampler's median, and for a precision other than the
first, each side's speedup over the first precision (`jax_speedup`, `torch_speedup`).
"""

import json
import os
import statistics
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top

common.define_size_flags()
flags.DEFINE_list("bridges", list(common.BRIDGE_NAMES), "bridges to compare")
flags.DEFINE_list("sampling_probs", ["0.25", "0"], "sampling probabilities to compare")
flags.DEFINE_list(
    "sample_froms", ["argmax", "categorical"], "feedbacks to compare where sampling_prob > 0"
)
flags.DEFINE_list("precisions", ["float32"], "precisions to compare, interleaved in each round")
flags.DEFINE_list(
    "torch_categoricals",
    ["gumbel"],
    "torch_baseline.py --categorical samplers of a categorical setting; the fastest is compared",
)
flags.DEFINE_integer("rounds", 3, "runs of each side per setting (alternating)")
flags.DEFINE_integer("timeout", 1800, "seconds before one run is abandoned")
flags.DEFINE_enum(
    "torch_device",
    "cpu",
    ["cpu", "cuda"],
    "torch_baseline.py --device (JAX runs on its default backend)",
)
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = {"jax": "train_throughput.py", "torch": "torch_baseline.py"}
CHOICES = {  # list flag -> its allowed values (the single-value flags' enums, where they exist)
    "bridges": common.BRIDGE_NAMES,
    "sample_froms": FLAGS["sample_from"].parser.enum_values,
    "precisions": FLAGS["precision"].parser.enum_values,
    "torch_categoricals": ("gumbel", "inverse_cdf", "multinomial"),  # torch_sampling.SAMPLERS
}


def run_one(side: tuple, bridge: str, probability: float, sample_from: str, precision: str):
    """One benchmark subprocess of `side` = (framework, torch sampler or None)."""
    framework, sampler = side
    args = common.subprocess_args(bridge, probability, sample_from=sample_from, precision=precision)
    if framework == "torch":
        args += [f"--device={FLAGS.torch_device}", f"--categorical={sampler}"]
    cmd = [sys.executable, os.path.join(HERE, SCRIPTS[framework])] + args
    return common.run_subprocess(cmd, FLAGS.timeout)


def _median(rows, key):
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else None


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def compare(bridge: str, probability: float, sample_from: str) -> list:
    """The rows of one setting, one per precision."""
    samplers = FLAGS.torch_categoricals if probability > 0 and sample_from == "categorical" else []
    sides = [("jax", None)] + [("torch", s) for s in samplers or [FLAGS.torch_categoricals[0]]]
    runs = {(p, side): [] for p in FLAGS.precisions for side in sides}
    for _ in range(FLAGS.rounds):
        for precision in FLAGS.precisions:
            for side in sides:
                runs[precision, side].append(
                    run_one(side, bridge, probability, sample_from, precision)
                )
    out = []
    for precision in FLAGS.precisions:
        jax_rows = runs[precision, sides[0]]
        by_sampler = {s: runs[precision, ("torch", s)] for _, s in sides[1:]}
        fastest = max(by_sampler, key=lambda s: _median(by_sampler[s], "tokens_per_s") or 0)
        torch_rows = by_sampler[fastest]
        jax_tps, torch_tps = _median(jax_rows, "tokens_per_s"), _median(torch_rows, "tokens_per_s")
        jax_cpu = _median(jax_rows, "cpu_ms_per_step")
        torch_cpu = _median(torch_rows, "cpu_ms_per_step")
        row = {
            "bridge": bridge,
            "sampling_prob": probability,
            "sample_from": sample_from if probability > 0 else None,
            "precision": precision,
            "jax_tokens_per_s": jax_tps,
            "torch_tokens_per_s": torch_tps,
            "ratio": _ratio(jax_tps, torch_tps),
            "jax_runs": [r.get("tokens_per_s") for r in jax_rows],
            "torch_runs": [r.get("tokens_per_s") for r in torch_rows],
            "torch_categorical": fastest if samplers else None,
            "torch_sampler_tokens_per_s": {
                s: _median(rows, "tokens_per_s") for s, rows in by_sampler.items()
            }
            if samplers
            else None,
            "jax_median_step_ms": _median(jax_rows, "median_step_ms"),
            "torch_median_step_ms": _median(torch_rows, "median_step_ms"),
            "jax_cpu_ms_per_step": jax_cpu,
            "torch_cpu_ms_per_step": torch_cpu,
            "cpu_ratio": _ratio(torch_cpu, jax_cpu),
            "jax_peak_fraction": _median(jax_rows, "peak_fraction"),
            "jax_matmul_peak_gflops": _median(jax_rows, "matmul_peak_gflops"),
            "torch_matmul_peak_gflops": _median(torch_rows, "matmul_peak_gflops"),
            "jax_compile_s": max(
                (r["compile_s"] for r in jax_rows if "compile_s" in r), default=None
            ),
            "torch_decoder": next((r["decoder"] for r in torch_rows if "decoder" in r), None),
            "cpu_model": common.cpu_model(),
        }
        if out:  # speedups over the first precision
            row["jax_speedup"] = _ratio(jax_tps, out[0]["jax_tokens_per_s"])
            row["torch_speedup"] = _ratio(torch_tps, out[0]["torch_tokens_per_s"])
        errors = [
            r["error"] for rows in [jax_rows, *by_sampler.values()] for r in rows if "error" in r
        ]
        if errors:
            row["errors"] = errors
        sizes = set(common.SIZE_FLAGS + ("rounds",)) - {"sample_from", "precision"}
        row.update({n: FLAGS[n].value for n in sorted(sizes)})
        row["decoder_hidden"] = common.decoder_hidden(bridge, FLAGS.hidden, FLAGS.decoder_hidden)
        out.append(row)
    return out


def main(argv):
    del argv
    for name, choices in CHOICES.items():
        unknown = sorted(set(FLAGS[name].value) - set(choices))
        if unknown:
            raise SystemExit(f"error: --{name}: unknown {unknown}; choose from {list(choices)}")
    for bridge in FLAGS.bridges:
        for probability in map(float, FLAGS.sampling_probs):
            for sample_from in FLAGS.sample_froms if probability > 0 else FLAGS.sample_froms[:1]:
                for row in compare(bridge, probability, sample_from):
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
