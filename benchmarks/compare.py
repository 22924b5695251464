"""s2s_jax against the PyTorch baseline, side by side, at the same settings.

  pip install -r benchmarks/requirements.txt
  python benchmarks/compare.py [--bridges=dense,attention] [--sampling_probs=0.25,0] [--rounds=3]

For every bridge and sampling probability, runs train_throughput.py (A) and torch_baseline.py
(B) alternately, A B A B ..., --rounds times each, every run a fresh subprocess with the same
flags, so that slow phases of a shared machine hit both alike. Prints one JSON line per setting:
the median tokens/s of each and their ratio (jax / torch), every run's tokens/s, and the median
CPU time per step of each (a second view that other work on the machine disturbs less).
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
flags.DEFINE_integer("rounds", 3, "runs of each framework per setting (alternating)")
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


def run_one(framework: str, bridge: str, probability: float) -> dict:
    """One benchmark subprocess; its JSON line, or {"error": ...}."""
    args = common.subprocess_args(bridge, probability)
    if framework == "torch":
        args.append(f"--device={FLAGS.torch_device}")
    cmd = [sys.executable, os.path.join(HERE, SCRIPTS[framework])] + args
    return common.run_subprocess(cmd, FLAGS.timeout)


def _median(rows, key):
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else None


def compare(bridge: str, probability: float) -> dict:
    rows = {"jax": [], "torch": []}
    for _ in range(FLAGS.rounds):
        for framework in ("jax", "torch"):
            rows[framework].append(run_one(framework, bridge, probability))
    jax_tps, torch_tps = (
        _median(rows["jax"], "tokens_per_s"),
        _median(rows["torch"], "tokens_per_s"),
    )
    jax_cpu = _median(rows["jax"], "cpu_ms_per_step")
    torch_cpu = _median(rows["torch"], "cpu_ms_per_step")
    out = {
        "bridge": bridge,
        "sampling_prob": probability,
        "jax_tokens_per_s": jax_tps,
        "torch_tokens_per_s": torch_tps,
        "ratio": round(jax_tps / torch_tps, 3) if jax_tps and torch_tps else None,
        "jax_runs": [r.get("tokens_per_s") for r in rows["jax"]],
        "torch_runs": [r.get("tokens_per_s") for r in rows["torch"]],
        "jax_median_step_ms": _median(rows["jax"], "median_step_ms"),
        "torch_median_step_ms": _median(rows["torch"], "median_step_ms"),
        "jax_cpu_ms_per_step": jax_cpu,
        "torch_cpu_ms_per_step": torch_cpu,
        "cpu_ratio": round(torch_cpu / jax_cpu, 3) if jax_cpu and torch_cpu else None,
        "jax_peak_fraction": _median(rows["jax"], "peak_fraction"),
        "jax_compile_s": max(
            (r["compile_s"] for r in rows["jax"] if "compile_s" in r), default=None
        ),
        "torch_decoder": next((r["decoder"] for r in rows["torch"] if "decoder" in r), None),
        "cpu_model": common.cpu_model(),
    }
    errors = [r["error"] for r in rows["jax"] + rows["torch"] if "error" in r]
    if errors:
        out["errors"] = errors
    out.update({n: FLAGS[n].value for n in common.SIZE_FLAGS + ("rounds",)})
    out["decoder_hidden"] = common.decoder_hidden(bridge, FLAGS.hidden, FLAGS.decoder_hidden)
    return out


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.bridges) - set(common.BRIDGE_NAMES))
    if unknown:
        raise app.UsageError(f"unknown bridges {unknown}; choose from {list(common.BRIDGE_NAMES)}")
    for bridge in FLAGS.bridges:
        for probability in FLAGS.sampling_probs:
            print(json.dumps(compare(bridge, float(probability))), flush=True)


if __name__ == "__main__":
    app.run(main)
