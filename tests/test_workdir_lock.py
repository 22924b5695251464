"""workdir_lock: one holder at a time, the holder named in the refusal, a killed holder's lock
taken over."""

import os
import signal
import subprocess
import sys

import pytest

from s2s_jax.training import workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with workdir_lock.WorkdirLock(str(tmp_path)):
        with pytest.raises(
            workdir_lock.WorkdirBusy,
            match=rf"--workdir={tmp_path} is in use by pid {os.getpid()} on host ",
        ):
            with workdir_lock.WorkdirLock(str(tmp_path)):
                pass
    with workdir_lock.WorkdirLock(str(tmp_path)):  # released on exit
        pass


def test_a_disabled_lock_takes_nothing(tmp_path):
    with workdir_lock.WorkdirLock(str(tmp_path), enabled=False):
        with workdir_lock.WorkdirLock(str(tmp_path)):
            pass


def test_the_lock_of_a_killed_process_is_stale(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from s2s_jax.training import workdir_lock; "
            f"workdir_lock.WorkdirLock({str(tmp_path)!r}).__enter__(); print('held', flush=True); "
            "time.sleep(600)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(workdir_lock.WorkdirBusy, match=f"pid {holder.pid} "):
            with workdir_lock.WorkdirLock(str(tmp_path)):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert f"pid {holder.pid} " in (tmp_path / workdir_lock.LOCK_FILE).read_text()  # left behind
    with workdir_lock.WorkdirLock(str(tmp_path)):
        text = (tmp_path / workdir_lock.LOCK_FILE).read_text()
    assert text.startswith(f"pid {os.getpid()} ")
