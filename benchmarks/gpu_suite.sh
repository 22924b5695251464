#!/usr/bin/env bash
# The GPU numbers of the benchmarks, in one go (for a machine with one NVIDIA GPU, jax[cuda] and
# torch with CUDA). Writes every JSON line to ${OUT:-.}/gpu_suite.jsonl, most important first,
# so a run cut short still leaves the settings that matter most:
#   0. compile_probe.py: the copy bridge's train step compiled from nothing under each XLA flag
#      set that might explain the compile time (about a minute each on an H200);
#   1. compare.py, every bridge at p = 0.25 and p = 0, s2s_jax against PyTorch on the GPU;
#   2. decoding (greedy and beam 5) of the attention model;
#   3. s2s_jax's train step in bfloat16 (compute_dtype), and at batch 512 in both frameworks.
# Usage: bash benchmarks/gpu_suite.sh [rounds (default 1)]
#
# Compiling one train step took 36-77 s on an H200 (2026-11-28), so the runs share a persistent
# compilation cache: the first run of a configuration compiles (its compile_s is the real
# cost), every later one, at another sampling probability or round, loads the executable (its
# compile_s is the load). The probe (step 0) compiles without that cache, once per flag set.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu_suite.jsonl"
rounds="${1:-1}"
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/s2s_jax_xla_cache}"
nvidia-smi -L || true
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
run() { echo "+ $*" >&2; "$@" 2>>"${out%.jsonl}.stderr" | grep '^{' | tee -a "$out"; }
run python3 benchmarks/compile_probe.py --bridge=copy --steps=5 --warmup=1
run python3 benchmarks/compare.py --torch_device=cuda --rounds="$rounds" --sampling_probs=0.25
run python3 benchmarks/compare.py --torch_device=cuda --rounds="$rounds" --sampling_probs=0
run python3 benchmarks/decode_throughput.py --bridge=attention
for bridge in attention dense; do
  run python3 benchmarks/train_throughput.py --bridge="$bridge" --precision=bfloat16
done
run python3 benchmarks/compare.py --torch_device=cuda --rounds="$rounds" --batch=512 \
  --bridges=attention,dense --sampling_probs=0.25
