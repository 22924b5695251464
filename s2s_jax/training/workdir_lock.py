"""One run per workdir: `<workdir>/.lock`, held with flock(2) for as long as a run uses it.

Two runs on one workdir would both append to metrics.jsonl and save over each other's
checkpoints. The kernel releases a flock when its holder exits for any reason, SIGKILL
included, so a lock file left behind by a killed run is stale by construction: the next run
takes it over without anyone deleting it. The file's text (pid, host, start time) is only there
to name the holder in the refusal.

Multi-host: only process 0 writes into the workdir (run_log, plots), so only it locks; the other
processes of the same run read it. Filesystems without flock support (some network mounts) get
a warning and no lock rather than no run.
"""
import errno
import fcntl
import os
import socket
import time

from absl import logging

LOCK_FILE = ".lock"


class WorkdirBusy(ValueError):
    """Another live process holds the workdir; the message names it and the fix."""


class WorkdirLock:
    """A context manager holding `<workdir>/.lock`; `enabled=False` makes it a no-op.

    Raises:
      WorkdirBusy: on entry, when another process holds it.
    """

    def __init__(self, workdir: str, enabled: bool = True, what: str = "--workdir"):
        self.path = os.path.join(workdir, LOCK_FILE)
        self.workdir, self.enabled, self.what = workdir, enabled, what
        self._fd = None

    def __enter__(self) -> "WorkdirLock":
        if not self.enabled:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusy(
                    f"{self.what}={self.workdir} is in use by {holder or 'another process'}; "
                    f"wait for that run to end (or stop it), or give another {self.what}"
                ) from None
            logging.warning("cannot lock %s (%s); running without a lock: do not start a "
                            "second run on this workdir", self.path, err.strerror or err)
            return self
        # Holder text for whoever is refused; the flock, not the text, is the lock.
        text = (f"pid {os.getpid()} on host {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
        except OSError:  # a full disk: the lock holds all the same, without its text
            pass
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            # The file stays: deleting it would race with a run that opened it meanwhile.
            os.close(self._fd)  # closing releases the flock
            self._fd = None
