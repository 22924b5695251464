"""Two checkouts of s2s_jax side by side: the training step before and after a change.

  git worktree add /tmp/before <commit>
  python benchmarks/ab.py --baseline=/tmp/before [--bridges=dense,attention]
      [--sampling_probs=0.25,0] [--rounds=3]

For every bridge and sampling probability, runs the baseline checkout's
benchmarks/train_throughput.py (A) and this checkout's (B) alternately, A B A B ..., --rounds
times each, every run a fresh subprocess with the same flags, so that slow phases of a shared
machine hit both alike. Prints one JSON line per setting: the median tokens/s of each, their ratio
(this checkout / baseline), and the ratio of their median CPU time per step.
"""

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.define_size_flags()
flags.DEFINE_string("baseline", None, "root of the other checkout (A)", required=True)
flags.DEFINE_list("bridges", list(common.BRIDGE_NAMES), "bridges to compare")
flags.DEFINE_list("sampling_probs", ["0.25", "0"], "sampling probabilities to compare")
flags.DEFINE_integer("rounds", 3, "runs of each checkout per setting (alternating)")
flags.DEFINE_integer("timeout", 1800, "seconds before one run is abandoned")
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _commit(root: str) -> str:
    out = subprocess.run(
        ["git", "-C", root, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def _median(rows, key):
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else None


def ab(bridge: str, probability: float) -> dict:
    roots = {"baseline": os.path.abspath(FLAGS.baseline), "this": HERE}
    rows = {side: [] for side in roots}
    for _ in range(FLAGS.rounds):
        for side, root in roots.items():
            cmd = [
                sys.executable,
                os.path.join(root, "benchmarks", "train_throughput.py"),
                *common.subprocess_args(bridge, probability),
            ]
            rows[side].append(common.run_subprocess(cmd, FLAGS.timeout))
    tps = {side: _median(r, "tokens_per_s") for side, r in rows.items()}
    cpu = {side: _median(r, "cpu_ms_per_step") for side, r in rows.items()}
    out = {
        "bridge": bridge,
        "sampling_prob": probability,
        "baseline_commit": _commit(roots["baseline"]),
        "this_commit": _commit(HERE),
        "baseline_tokens_per_s": tps["baseline"],
        "this_tokens_per_s": tps["this"],
        "ratio": round(tps["this"] / tps["baseline"], 3) if all(tps.values()) else None,
        "cpu_ratio": round(cpu["baseline"] / cpu["this"], 3) if all(cpu.values()) else None,
        "baseline_runs": [r.get("tokens_per_s") for r in rows["baseline"]],
        "this_runs": [r.get("tokens_per_s") for r in rows["this"]],
        "cpu_model": common.cpu_model(),
    }
    errors = [r["error"] for r in rows["baseline"] + rows["this"] if "error" in r]
    if errors:
        out["errors"] = errors
    out.update({n: FLAGS[n].value for n in common.SIZE_FLAGS + ("rounds",)})
    return out


def main(argv):
    del argv
    for bridge in FLAGS.bridges:
        for probability in FLAGS.sampling_probs:
            print(json.dumps(ab(bridge, float(probability))), flush=True)


if __name__ == "__main__":
    app.run(main)
