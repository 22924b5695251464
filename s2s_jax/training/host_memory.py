"""Host memory: make glibc keep freed memory for reuse instead of returning it to the kernel.

A training step allocates and frees its buffers every step (XLA:CPU takes them from malloc).
By default glibc serves big blocks with fresh mmap()s and trims its heaps, so every step
page-faults that memory in again. Two settings, measured on 2 cores (AMD EPYC, 2026-11-29):

- "keep": no mmap()ed blocks, no trimming (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647
  in the environment). The default experiment: 20 -> 23-28 steps/s (all of `python run.py`:
  92 -> 78 s); the bridges study's smaller model: 107 -> 115 steps/s. It cannot help blocks
  bigger than 64 MB allocated off the main thread: glibc's per-thread arenas are made of 64 MB
  heaps, so such blocks are mmap()ed (and unmapped on free) whatever the settings.
- "keep_one_arena": the same with a single arena (MALLOC_ARENA_MAX=1), which serves every
  block from the main heap: at the benchmark size (batch 64 x length 30 x vocabulary 8000, a
  61 MB logits array) 80k -> 0 minor faults and 360 -> 310 ms per step. But the threads then
  share one lock: the bridges model drops to 75-95 steps/s. For big batch x length x vocabulary,
  and for K seeds vmapped (s2s_jax.studies.multiseed's default): XLA:CPU takes a step's temporaries as
  one block, which there passes 64 MB (114 MB for the bridges study at K = 4: 29k faults a step
  with "keep", 0.9k with one arena).

Better for big blocks where glibc is 2.35 or newer and transparent huge pages are on "madvise"
(or "always"): start the process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which glibc reads
only at startup. Its mmap()ed blocks then come in 2 MB pages: at the benchmark size with "keep",
90k -> 500 faults and 317-334 -> 265 ms per step, as fast as one arena, without its contention
(the default experiment and the bridges model run as with "keep" alone).

The cost of every setting but "off": the process's resident memory stays at its peak instead of
shrinking.

XLA:CPU takes all of a step's temporaries as one block per call, so `step_block_advice` can
tell from the compiled step (`memory_analysis().temp_size_in_bytes`) whether "keep" will do;
train.py warns with it. Measured with a 8000-word vocabulary, batch 64, length 30 (a 275 MB
block): 2.8-2.9 steps/s with "keep", 3.3-3.4 with "keep_one_arena".
"""
import ctypes
import ctypes.util
import os
from typing import Optional

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
MODES = ("keep", "keep_one_arena", "off")
# The most a glibc thread arena's heap holds (HEAP_MAX_SIZE on 64-bit): a bigger block from a
# thread other than the main one is mmap()ed, and unmapped when freed, in every mode but one arena.
THREAD_HEAP_BYTES = 64 * 2 ** 20
_applied = None  # the mode keep_freed_memory applied to this process, if any


def keep_freed_memory(mode: str = "keep") -> bool:
    """Applies `mode` (one of MODES; "off" changes nothing) to this process's malloc. Call it
    before JAX creates its backend (its threads pick their arenas then). Returns whether the C
    library accepted every setting (False where it is not glibc)."""
    global _applied
    if mode not in MODES:
        raise ValueError(f"unknown malloc mode {mode!r}; choose one of {list(MODES)}")
    _applied = mode
    if mode == "off":
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    settings = [(_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2 ** 31 - 1)]
    if mode == "keep_one_arena":
        settings.append((_M_ARENA_MAX, 1))
    try:
        libc = ctypes.CDLL(name)
        return all([libc.mallopt(param, value) == 1 for param, value in settings])
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False


def step_block_advice(temp_bytes: int) -> Optional[str]:
    """What to change when a compiled step's temporaries, which XLA:CPU takes as one block per
    call, are too big for this process's malloc to keep; None when they are kept (or the user
    chose "off"). temp_bytes: `compiled.memory_analysis().temp_size_in_bytes`."""
    if _applied in ("keep_one_arena", "off") or temp_bytes <= THREAD_HEAP_BYTES:
        return None
    if "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", ""):
        return None  # mmap()ed in 2 MB pages: few faults
    return (f"the train step's temporaries are one {temp_bytes / 2 ** 20:.0f} MB block, more "
            f"than the {THREAD_HEAP_BYTES // 2 ** 20} MB a glibc thread heap holds, so every "
            f"step page-faults it in again; rerun with --malloc_tuning=keep_one_arena, or with "
            f"GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the environment (s2s_jax/training/host_memory.py)")
