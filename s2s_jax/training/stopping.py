"""Stop requests: SIGTERM and Ctrl-C become a flag that a loop checks between its steps.

A preempted job (SIGTERM) and a researcher's Ctrl-C both let the step in flight finish, so the
train loop checkpoints it and exits cleanly, and the same command resumes from there; a sweep
launches nothing more and passes SIGTERM on to its runs. A second Ctrl-C interrupts at once
(KeyboardInterrupt), for when the clean stop is not wanted.

A stopped run exits with 128 + the signal's number (143 for SIGTERM, 130 for Ctrl-C), what a
shell reports for a process the signal ended, and not 0: `python run.py && next-step` must not
go on after a preemption as if the run had finished. Its final JSON line says `stopped_at`.
"""

import signal

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Exit statuses of a clean stop; a sweep counts a run ending with one as stopped, not failed.
STOPPED_STATUSES = frozenset(128 + s for s in SIGNALS)


def exit_status(result: dict) -> int:
    """The exit status of a run that returned `result`: 128 + the stop signal's number for
    {'stopped_at': ..., 'signal': name}, else 0."""
    if "stopped_at" not in result:
        return 0
    return 128 + signal.Signals[result.get("signal") or "SIGTERM"].value


class StopRequest:
    """`requested` is set by the first SIGTERM or Ctrl-C once `install()`ed (or entered as a
    context manager); `restore()` puts the previous handlers back. Main thread only."""

    def __init__(self):
        self.requested = False
        self.signal_name = None  # 'SIGTERM' or 'SIGINT', once requested
        self._previous = {}

    def install(self) -> "StopRequest":
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT:
            if self.requested:
                raise KeyboardInterrupt
            logging.warning(
                "Ctrl-C: stopping after the step in flight, with a checkpoint "
                "(press Ctrl-C again to quit at once, without one)"
            )
        self.requested = True
        self.signal_name = self.signal_name or signal.Signals(signum).name

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()
