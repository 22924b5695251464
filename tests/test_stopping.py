"""Stop requests: the first SIGTERM or Ctrl-C sets the flag, a second Ctrl-C interrupts."""

import os
import signal

import pytest

from s2s_jax.training.stopping import StopRequest


def _send(signum):
    os.kill(os.getpid(), signum)  # delivered to the main thread before os.kill returns


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_sets_the_flag_and_a_second_ctrl_c_interrupts(first):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequest() as stop:
        assert not stop.requested
        _send(first)
        assert stop.requested  # and no exception: the loop finishes its step
        _send(signal.SIGTERM)  # more SIGTERMs change nothing
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before  # handlers put back
