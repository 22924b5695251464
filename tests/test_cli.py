"""Entry points started through s2s_jax.cli.run keep freed host memory for reuse."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A jitted function whose [ROWS, 4096] float32 output is freed after every call, as a train step
# frees its buffers; prints the minor page faults per call once the allocator has warmed up.
_PROGRAM = """
import resource, sys
import jax, jax.numpy as jnp
from s2s_jax import cli

def main(argv):
    x = jnp.zeros((int(sys.argv[1]), 4096), jnp.float32)
    f = jax.jit(lambda x: x + 1.0)
    for _ in range(10):
        f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        f(x).block_until_ready()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)

cli.run(main, malloc_default=MALLOC_DEFAULT)
"""


def _faults_per_call(tmp_path, rows, *flags, malloc_default="keep"):
    script = tmp_path / "program.py"
    script.write_text(_PROGRAM.replace("MALLOC_DEFAULT", repr(malloc_default)))
    # glibc's own settings from the environment would change what "off" means.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    env["PYTHONPATH"] = ROOT
    proc = subprocess.run(
        [sys.executable, str(script), str(rows), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mbytes,mode", [(48, None), (80, "keep_one_arena")])
def test_freed_step_buffers_are_reused_instead_of_page_faulted_in_again(tmp_path, mbytes, mode):
    """glibc always mmap()s blocks over 32 MB and unmaps them on free, so by default every call
    faults its output in again; the default tuning keeps such blocks (up to 64 MB), one arena
    keeps bigger ones too."""
    rows = mbytes * 2**20 // (4096 * 4)
    untuned = _faults_per_call(tmp_path, rows, "--malloc_tuning=off")
    tuned = _faults_per_call(tmp_path, rows, *([f"--malloc_tuning={mode}"] if mode else []))
    # At least one fault per page of the output, even if the kernel hands out 2 MB huge pages
    # (4 KB pages give 512 times as many: 12289 a call measured for 48 MB).
    assert untuned >= 0.9 * mbytes / 2
    assert tuned <= 0.5 * untuned


def test_an_entry_point_sets_its_own_malloc_default(tmp_path):
    """s2s_jax.studies.multiseed's vmapped step takes K times one run's temporaries in one block,
    past 64 MB, so its entry point defaults to one arena; run.py keeps `keep`."""
    rows = 80 * 2**20 // (4096 * 4)
    untuned = _faults_per_call(tmp_path, rows, "--malloc_tuning=off")
    one_arena = _faults_per_call(tmp_path, rows, malloc_default="keep_one_arena")
    assert one_arena <= 0.5 * untuned
    for command, default in (
        (["-m", "s2s_jax.studies.multiseed"], "keep_one_arena"),
        ([os.path.join(ROOT, "run.py")], "keep"),
    ):
        proc = subprocess.run(
            [sys.executable, *command, "--helpfull"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            check=False,
        )
        help_text = proc.stdout + proc.stderr
        start = help_text.index("--malloc_tuning:")
        entry = help_text[start : help_text.index("(default:", start) + 30]
        assert f"(default: '{default}')" in entry, entry
