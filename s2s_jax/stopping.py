"""Stop requests: SIGTERM and Ctrl-C become a flag that a loop checks between its steps.

A preempted job (SIGTERM) and a researcher's Ctrl-C both let the step in flight finish, so the
train loop checkpoints it and exits cleanly, and the same command resumes from there; a sweep
launches nothing more and passes SIGTERM on to its runs. A second Ctrl-C interrupts at once
(KeyboardInterrupt), for when the clean stop is not wanted.
"""
import signal

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """`requested` is set by the first SIGTERM or Ctrl-C once `install()`ed (or entered as a
    context manager); `restore()` puts the previous handlers back. Main thread only."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def install(self) -> "StopRequest":
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT:
            if self.requested:
                raise KeyboardInterrupt
            logging.warning("Ctrl-C: stopping after the step in flight, with a checkpoint "
                            "(press Ctrl-C again to quit at once, without one)")
        self.requested = True

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()
