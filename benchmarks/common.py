"""What the JAX and PyTorch training benchmarks share: flags, sizes and analytic FLOPs.

Imports no framework, so `torch_baseline.py` and `train_throughput.py` count the same model the
same way. Every FLOP count is 2 per multiply-add of the *model's* matmuls (input and recurrent
projections, bridge, attention, output layer); a training step is counted as 3x the forward pass
(forward, and a backward that needs two matmuls per forward one). Work an implementation adds on
its own (e.g. projecting both the gold and the sampled token, or recomputing something) is not
counted, so a faster implementation of the same model gets a higher `peak_fraction`.
"""

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

from absl import flags

# The repository root, for s2s_jax.training.host_memory (ctypes only: importing it starts no
# framework).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2s_jax.training import host_memory  # noqa: E402  pylint: disable=g-import-not-at-top


class BridgeCost(NamedTuple):
    """What the benchmarks need to know of a bridge, without importing a framework."""

    width: int  # the decoder width it needs, in encoder widths (bridges.Bridge.decoder_width)
    flops: Callable  # (B, encoder state total, decoder state total, H, Hd) -> its matmul FLOPs
    step_inputs: Callable = lambda enc_total: 0  # its per-step input width (Bridge.step_input_dim)
    reads_encoder: bool = True  # False: without attention, nothing of the encoder is used


# One entry per s2s_jax.models.bridges.BRIDGES name; tests/test_benchmarks.py checks the names,
# the widths and torch_baseline.py's implementations against the registry.
BRIDGE_COSTS = {
    "zero": BridgeCost(1, lambda b, enc, dec, h, hd: 0, reads_encoder=False),
    "copy": BridgeCost(1, lambda b, enc, dec, h, hd: 0),
    "dense": BridgeCost(1, lambda b, enc, dec, h, hd: 2 * b * enc * dec),
    # each state tensor [h] projected to [hd - h]
    "concat": BridgeCost(2, lambda b, enc, dec, h, hd: 2 * b * enc * (hd - h)),
    "concat_inputs": BridgeCost(1, lambda b, enc, dec, h, hd: 0, step_inputs=lambda enc: enc),
}
# The benchmarks' --bridge=attention (s2s_jax.models.model.ATTENTION_BRIDGE): Bahdanau attention
# over the initial state of ATTENTION_INIT, as experiments/default.py.
ATTENTION_BRIDGE, ATTENTION_INIT = "attention", "dense"
BRIDGE_NAMES = tuple(sorted([*BRIDGE_COSTS, ATTENTION_BRIDGE]))  # = model.BRIDGE_SPELLINGS
# Mirrors s2s_jax.models.cells.CELLS; train_throughput.py checks that they agree.
CELL_NAMES = ("gru", "lstm")
GATES = {"lstm": 4, "gru": 3}

FLAGS = flags.FLAGS


SIZE_FLAGS = (
    "batch",
    "src_len",
    "tgt_len",
    "vocab",
    "emb",
    "hidden",
    "decoder_hidden",
    "layers",
    "cell",
    "attention_type",
    "sample_from",
    "precision",
    "steps",
    "warmup",
    "seed",
    "malloc_tuning",
)


def define_model_flags():
    """The sizes of the reference setting and the cell, shared by every benchmark of the model
    (training and decoding)."""
    flags.DEFINE_integer("batch", 64, "B, examples per step (or per decoding call)")
    flags.DEFINE_integer("src_len", 30, "S, source length (every token is real)")
    flags.DEFINE_integer(
        "tgt_len", 30, "T, target length (every token is real, the last is EOS); decoding steps"
    )
    flags.DEFINE_integer("vocab", 8000, "V, source and target vocabulary size")
    flags.DEFINE_integer("emb", 256, "E, embedding size")
    flags.DEFINE_integer("hidden", 512, "H, encoder hidden size")
    flags.DEFINE_integer("layers", 1, "L, layers of the encoder and of the decoder")
    flags.DEFINE_enum("cell", "lstm", CELL_NAMES, "recurrent cell")
    flags.DEFINE_integer("seed", 0, "random seed of parameters and data")
    flags.DEFINE_enum(
        "malloc_tuning",
        "keep_one_arena",
        list(host_memory.MODES),
        "s2s_jax.training.host_memory mode of the process (tune_malloc); the benchmarks "
        "default to keep_one_arena, run.py to keep",
    )


def define_size_flags():
    """Every flag of the training benchmarks except --bridge and --sampling_prob."""
    define_model_flags()
    flags.DEFINE_integer(
        "decoder_hidden",
        0,
        "decoder hidden size; 0 = H, except bridge=concat: 2H (the raw encoder "
        "state plus a projection of the same size)",
    )
    flags.DEFINE_enum(
        "attention_type",
        "bahdanau",
        ["bahdanau"],
        "attention of bridge=attention (the baseline implements Bahdanau only)",
    )
    flags.DEFINE_enum(
        "sample_from",
        "categorical",
        ["argmax", "categorical"],
        "how a fed-back token is drawn from the previous step's logits",
    )
    flags.DEFINE_enum(
        "precision",
        "float32",
        ["bfloat16", "float32"],  # s2s_jax.models.precision.PRECISIONS
        "matmul precision. JAX: ModelConfig.precision (bfloat16 operands, float32 accumulation; "
        "parameters and optimizer state stay float32). PyTorch: torch.autocast(bfloat16) around "
        "the forward pass and the loss. The matmul peak is measured in the same precision",
    )
    flags.DEFINE_integer("steps", 20, "timed training steps")
    flags.DEFINE_integer("warmup", 3, "untimed steps after compilation")


def define_flags():
    """The flags both training benchmarks take (same names, same defaults)."""
    define_size_flags()
    flags.DEFINE_enum("bridge", "dense", BRIDGE_NAMES, "how the encoder conditions the decoder")
    flags.DEFINE_float("sampling_prob", 0.25, "scheduled-sampling probability (0: teacher forcing)")


def subprocess_args(bridge: str, probability, **overrides) -> list:
    """Flags that make a training benchmark in a subprocess run this process's settings (every
    SIZE_FLAGS flag, or its value in `overrides`) with `bridge` and `probability`."""
    unknown = set(overrides) - set(SIZE_FLAGS)
    if unknown:
        raise ValueError(f"not size flags: {sorted(unknown)}")
    args = [f"--{n}={overrides.get(n, FLAGS[n].value)}" for n in SIZE_FLAGS]
    return args + [f"--bridge={bridge}", f"--sampling_prob={probability}"]


def run_subprocess(cmd: list, timeout: float, env=None) -> dict:
    """Runs one benchmark in a fresh process: its last JSON line, or {"error": ...} naming the
    exit status and the end of its stderr (or the timeout)."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}


def tune_malloc() -> bool:
    """Applies --malloc_tuning (s2s_jax.training.host_memory) to this process. With the default,
    keep_one_arena, glibc keeps and reuses freed memory from one arena: both frameworks allocate
    and free hundreds of MB per training step, blocks over 64 MB among them (the [B, T, V]
    logits), and without it every step page-faults them in again (~80k faults, ~50 ms a step
    here). Call it before the framework starts its threads."""
    return host_memory.keep_freed_memory(FLAGS.malloc_tuning)


def initial_bridge(bridge: str) -> str:
    """The BRIDGE_COSTS entry that gives the decoder its initial state under --bridge=`bridge`."""
    return ATTENTION_INIT if bridge == ATTENTION_BRIDGE else bridge


def decoder_hidden(bridge: str, hidden: int, requested: int = 0) -> int:
    if requested:
        return requested
    return BRIDGE_COSTS[initial_bridge(bridge)].width * hidden


def settings() -> dict:
    """The flag values that define a run, as they appear in the JSON line."""
    out = {n: FLAGS[n].value for n in SIZE_FLAGS + ("bridge", "sampling_prob")}
    out["decoder_hidden"] = decoder_hidden(FLAGS.bridge, FLAGS.hidden, FLAGS.decoder_hidden)
    return out


def forward_matmul_flops(
    batch, src_len, tgt_len, vocab, emb, hidden, dec_hidden, layers, cell, bridge
) -> int:
    """Multiply-add FLOPs (x2) of one forward pass of the model's matmuls.

    With bridge=zero (and no attention) nothing the encoder computes reaches the loss, so the
    encoder counts for nothing (XLA removes it; eager PyTorch still runs its forward pass).
    """
    g = GATES[cell]
    b, s, t, v, e, h, hd = batch, src_len, tgt_len, vocab, emb, hidden, dec_hidden
    attends = bridge == ATTENTION_BRIDGE
    cost = BRIDGE_COSTS[initial_bridge(bridge)]
    flops = 0
    # Encoder: per layer, input projection (hoisted) and recurrent projection, every token.
    for layer in range(layers if attends or cost.reads_encoder else 0):
        in_dim = e if layer == 0 else h
        flops += 2 * b * s * (in_dim + h) * g * h
    state_total = layers * (2 if cell == "lstm" else 1) * h  # encoder state features
    dec_total = layers * (2 if cell == "lstm" else 1) * hd
    flops += cost.flops(b, state_total, dec_total, h, hd)  # the bridge
    context = h if attends else 0
    fixed = cost.step_inputs(state_total)
    # Decoder: layer-0 input is [emb ; context ; fixed], every target step.
    for layer in range(layers):
        in_dim = (e + context + fixed) if layer == 0 else hd
        flops += 2 * b * t * (in_dim + hd) * g * hd
    if attends:  # Bahdanau, attention size = decoder hidden
        a = hd
        flops += 2 * b * s * h * a  # key projection, once
        flops += 2 * b * t * hd * a  # query projection, every step
        flops += 2 * b * t * s * a  # v . tanh(...) scores
        flops += 2 * b * t * s * h  # context = weights . keys
    flops += 2 * b * t * (hd + context) * v  # output layer
    return flops


def train_gflop_per_step(**sizes) -> float:
    return 3 * forward_matmul_flops(**sizes) / 1e9


def sizes_from_flags() -> dict:
    return dict(
        batch=FLAGS.batch,
        src_len=FLAGS.src_len,
        tgt_len=FLAGS.tgt_len,
        vocab=FLAGS.vocab,
        emb=FLAGS.emb,
        hidden=FLAGS.hidden,
        dec_hidden=decoder_hidden(FLAGS.bridge, FLAGS.hidden, FLAGS.decoder_hidden),
        layers=FLAGS.layers,
        cell=FLAGS.cell,
        bridge=FLAGS.bridge,
    )


def process_usage():
    """(CPU seconds, minor page faults) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


def cpu_model() -> str:
    """The host CPU: model name, family and model number (Linux /proc/cpuinfo; else
    platform.processor()). Results from different machine kinds differ by more than any change
    measured on one (a virtual machine may name only the vendor: the numbers tell its
    generation), so every line says which it came from."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break  # the first processor is enough
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or "unknown"
    return (
        f"{fields['model name']} (family {fields.get('cpu family', '?')}, "
        f"model {fields.get('model', '?')})"
    )


def report(
    framework: str,
    step_seconds,
    compile_s: float,
    param_count: int,
    peak_gflops: float,
    usage_delta=None,
    **extra,
) -> dict:
    """Builds and prints the one JSON line of a training benchmark.

    usage_delta: (CPU seconds, minor faults) over the timed steps, reported per step: CPU time
    is less disturbed than wall time by other work on a shared machine.
    """
    total = sum(step_seconds)
    median_s = statistics.median(step_seconds)
    gflop = train_gflop_per_step(**sizes_from_flags())
    row = {
        "framework": framework,
        "tokens_per_s": round(FLAGS.batch * FLAGS.tgt_len * len(step_seconds) / total, 1),
        "median_step_ms": round(1e3 * median_s, 2),
        "compile_s": round(compile_s, 3),
        "param_count": int(param_count),
        "gflop_per_step": round(gflop, 3),
        "achieved_gflops": round(gflop / median_s, 1),
        "matmul_peak_gflops": round(peak_gflops, 1),
        "peak_fraction": round(gflop / median_s / peak_gflops, 3),
        "min_step_ms": round(1e3 * min(step_seconds), 2),
    }
    if usage_delta is not None:
        row["cpu_ms_per_step"] = round(1e3 * usage_delta[0] / len(step_seconds), 1)
        row["minor_faults_per_step"] = round(usage_delta[1] / len(step_seconds))
    row["cpu_model"] = cpu_model()
    row.update(extra)
    row.update(settings())
    print(json.dumps(row), flush=True)
    return row


# What the optimised HLO of a compiled step holds, counted by line (each counts instructions
# defined in the text, fused computations included): the GPU compile-time suspects are the
# matmuls XLA autotunes (cuBLAS calls and Triton GEMM fusions, each timed in several
# configurations while compiling) and loops it unrolls (an unrolled scan leaves no while).
HLO_PATTERNS = {
    "hlo_while_loops": r"\swhile\(",
    "hlo_fusions": r"\sfusion\(",
    "hlo_dots": r"\sdot\(",
    "hlo_cublas_calls": r'custom_call_target="__cublas',
    "hlo_triton_gemms": r"__triton_gemm",
}


def hlo_summary(text: str) -> dict:
    """Line counts of HLO_PATTERNS in `compiled.as_text()`, and the text's length in lines."""
    lines = text.splitlines()
    out = {"hlo_lines": len(lines)}
    for name, pattern in HLO_PATTERNS.items():
        regex = re.compile(pattern)
        out[name] = sum(1 for line in lines if regex.search(line))
    return out


def random_token_arrays(rng, batch, src_len, tgt_len, vocab):
    """numpy int32 arrays of one batch: ids >= 4 (specials below), every target ending in EOS."""
    inputs = rng.randint(4, vocab, size=(batch, src_len)).astype("int32")
    targets = rng.randint(4, vocab, size=(batch, tgt_len)).astype("int32")
    targets[:, -1] = 2
    return inputs, targets
