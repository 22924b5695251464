"""Where the train step's compile time goes: the same step compiled under several XLA flag sets.

  python benchmarks/compile_probe.py [--bridge=copy] [--variants=default,autotune_0]

Compiling the train step took 36-77 s on an H200 (2026-11-28) against 2.2-5 s on 2 CPU cores.
For each variant (VARIANTS below) this runs train_throughput.py in a fresh process with the
variant's flags appended to XLA_FLAGS (XLA reads them once, when the backend starts) and the
persistent compilation cache off, so every variant compiles from nothing (that cache also holds
XLA's GPU autotuning results). Prints one JSON line per variant: its name and flags, then
train_throughput's line (compile_s, lower_s, median_step_ms, the hlo_* counts of the optimised
program), or "error" (an XLA that does not know a flag stops at startup and names it).

The GPU flags are accepted and ignored by XLA:CPU, so the probe runs anywhere; only a GPU shows
their effect. On the H200 one variant of the copy bridge should cost about a minute (38-42 s to
compile).
"""

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top

# Name -> flags added to XLA_FLAGS. Each names one suspect of the GPU compile time.
VARIANTS = {
    "default": (),
    # No timing of candidate kernels for each matmul while compiling (XLA's heuristics pick).
    "autotune_0": ("--xla_gpu_autotune_level=0",),
    # Every matmul through cuBLAS: no search over Triton GEMM tilings, each compiled to time it.
    "no_triton_gemm": ("--xla_gpu_enable_triton_gemm=false",),
    # Scans stay loops: unrolled ones multiply the kernels to compile by their length.
    "no_loop_unrolling": ("--xla_gpu_enable_while_loop_unrolling=WHILE_LOOP_UNROLLING_NO_UNROLL",),
    # The LLVM module split and compiled on all host cores (jax turns this on for its kernel
    # cache only): helps if the time is code generation rather than autotuning.
    "parallel_llvm": ("--xla_gpu_enable_llvm_module_compilation_parallelism=true",),
}

common.define_size_flags()
flags.DEFINE_enum("bridge", "copy", common.BRIDGE_NAMES, "the bridge of the probed model")
flags.DEFINE_float("sampling_prob", 0.25, "scheduled-sampling probability of the probed step")
flags.DEFINE_list("variants", list(VARIANTS), f"flag sets to compile under, from {list(VARIANTS)}")
flags.DEFINE_integer("timeout", 900, "seconds before one variant's run is abandoned")
flags.register_validator(
    "variants",
    lambda names: set(names) <= set(VARIANTS),
    f"--variants: each must be one of {list(VARIANTS)}",
)
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))


def probe_env(extra_flags) -> dict:
    """This process's environment with `extra_flags` after any XLA_FLAGS already set, and no
    persistent compilation cache."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", "")] + list(extra_flags)).strip()
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def probe(name: str) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "train_throughput.py")]
    cmd += common.subprocess_args(FLAGS.bridge, FLAGS.sampling_prob)
    row = {"variant": name, "xla_flags": " ".join(VARIANTS[name])}
    row.update(common.run_subprocess(cmd, FLAGS.timeout, env=probe_env(VARIANTS[name])))
    return row


def main(argv):
    del argv
    rows = []
    for name in FLAGS.variants:
        rows.append(probe(name))
        print(json.dumps(rows[-1]), flush=True)
    return 1 if all("error" in r for r in rows) else 0


if __name__ == "__main__":
    app.run(main)
