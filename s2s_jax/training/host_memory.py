"""Host memory: make glibc keep freed memory for reuse instead of returning it to the kernel.

A training step allocates and frees its buffers every step (XLA:CPU takes them from malloc).
By default glibc serves big blocks with fresh mmap()s and trims its heaps, so every step
page-faults that memory in again. The modes (`MODES`, chosen by an entry point's --malloc_tuning):

- "keep": no mmap()ed blocks, no trimming (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647
  in the environment). It cannot help blocks bigger than a thread arena's 64 MB heap allocated
  off the main thread: glibc mmap()s those (and unmaps them on free) whatever the settings.
- "keep_one_arena": the same with a single arena (MALLOC_ARENA_MAX=1), which serves every block
  from the main heap, big ones included; but the threads then share one lock, which costs
  smaller models speed. For big batch x length x vocabulary, and for K seeds vmapped
  (s2s_jax.studies.multiseed's default), whose step's one block of temporaries passes 64 MB.
- "off": glibc's defaults.

Where glibc is 2.35 or newer and transparent huge pages are on "madvise" (or "always"),
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the environment (glibc reads it only at startup) serves
the mmap()ed blocks in 2 MB pages, which fixes big blocks without one arena's contention. Every
mode but "off" keeps the process's resident memory at its peak instead of shrinking.

XLA:CPU takes all of a step's temporaries as one block per call, so `step_block_advice` can tell
from the compiled step (`memory_analysis().temp_size_in_bytes`) whether "keep" will do; the
training loop warns with it. Measurements of each mode: benchmarks/README.md, "Vmapped seeds and
host memory".
"""

import ctypes
import ctypes.util
import os

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
MODES = ("keep", "keep_one_arena", "off")
# The most a glibc thread arena's heap holds (HEAP_MAX_SIZE on 64-bit): a bigger block from a
# thread other than the main one is mmap()ed, and unmapped when freed, in every mode but one arena.
THREAD_HEAP_BYTES = 64 * 2**20
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
    settings = [(_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)]
    if mode == "keep_one_arena":
        settings.append((_M_ARENA_MAX, 1))
    try:
        libc = ctypes.CDLL(name)
        return all([libc.mallopt(param, value) == 1 for param, value in settings])
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False


def step_block_advice(temp_bytes: int) -> str | None:
    """What to change when a compiled step's temporaries, which XLA:CPU takes as one block per
    call, are too big for this process's malloc to keep; None when they are kept (or the user
    chose "off"). temp_bytes: `compiled.memory_analysis().temp_size_in_bytes`."""
    if _applied in ("keep_one_arena", "off") or temp_bytes <= THREAD_HEAP_BYTES:
        return None
    if "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", ""):
        return None  # mmap()ed in 2 MB pages: few faults
    return (
        f"the train step's temporaries are one {temp_bytes / 2**20:.0f} MB block, more "
        f"than the {THREAD_HEAP_BYTES // 2**20} MB a glibc thread heap holds, so every "
        f"step page-faults it in again; rerun with --malloc_tuning=keep_one_arena, or with "
        f"GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the environment "
        f"(s2s_jax/training/host_memory.py)"
    )
