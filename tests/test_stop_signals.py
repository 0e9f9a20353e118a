"""SIGTERM outside the training loop raises StopRequested; inside it, it only asks to stop."""

from __future__ import annotations

import os
import signal
import time

import pytest

from r3d_jax import stop_signals


@pytest.fixture
def restored_handlers():
    previous = {signum: signal.getsignal(signum) for signum in stop_signals.SIGNALS}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_a_signal_outside_the_loop_raises_and_the_next_one_kills(restored_handlers):
    with pytest.raises(stop_signals.StopRequested, match='SIGTERM'), (
        stop_signals.raise_on_stop_signals()
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # Cut short: the handler raises.

    assert all(signal.getsignal(s) is signal.SIG_DFL for s in stop_signals.SIGNALS)


def test_inside_the_loop_a_signal_only_asks_to_stop(restored_handlers):
    with stop_signals.raise_on_stop_signals():
        outside = signal.getsignal(signal.SIGTERM)
        with stop_signals.StopSignals() as stop:
            assert not stop.should_stop(step=1)
        assert signal.getsignal(signal.SIGTERM) is outside  # Restored after a quiet loop.

        with stop_signals.StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.should_stop(step=2) and stop.signal_name == 'SIGINT'
        assert all(signal.getsignal(s) is signal.SIG_DFL for s in stop_signals.SIGNALS)
