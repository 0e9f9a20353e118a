"""SIGTERM and SIGINT (Ctrl-C) end a run cleanly, whatever it is doing at the time.

Two ways, one for each part of a run:
- `raise_on_stop_signals`: everywhere outside the training loop (data generation, the dataset
  build, compilation, the final evaluation) a signal raises `StopRequested` in the main thread;
  the work under way unwinds through its cleanup (the builders write under temporary names, so
  nothing half-written is left looking whole) and the command reports the stop and exits 0.
- `StopSignals`: inside the training loop a signal only records the request; the loop saves a
  checkpoint at the next step and returns.
After the first signal both restore the system's default action, so a second one ends the
process at once. Python runs signal handlers in the main thread only; elsewhere (a test's
worker thread) both leave the handlers as they are.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)
logger = logging.getLogger(__name__)


class StopRequested(BaseException):
    """SIGTERM or SIGINT arrived outside the training loop.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on its way out
    mistakes it for an error.
    """

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f'Received {self.signal_name}')


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler: Any) -> dict[int, Any]:
    """Sets `handler` for SIGNALS; returns the handlers it replaced."""
    return {signum: signal.signal(signum, handler) for signum in SIGNALS}


def _default_actions() -> None:
    """From now on a stop signal ends the process at once."""
    _install(signal.SIG_DFL)


@contextlib.contextmanager
def raise_on_stop_signals() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGINT raise `StopRequested` (once; then they kill)."""
    if not _in_main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        _default_actions()
        raise StopRequested(signum)

    previous = _install(stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is stop:
                signal.signal(signum, handler)


class StopSignals:
    """SIGTERM and SIGINT ask the loop to save a checkpoint and return; a second one kills.

    In a multi-process run the processes agree (at logging steps) before any of them stops,
    since saving is collective.
    """

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._previous: dict[int, Any] = {}
        self.signal_name: str | None = None  # The signal that asked to stop, once one did.

    def __enter__(self) -> StopSignals:
        if _in_main_thread():
            self._previous = _install(self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._requested.is_set():
            return  # The defaults stay: a second signal still kills at once.
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name
        logger.warning(
            'Received %s: saving a checkpoint and stopping (send it again to stop at once).',
            self.signal_name,
        )
        self._requested.set()
        _default_actions()

    def should_stop(self, step: int, log_every_steps: int = 1, at_sync_point: bool = False) -> bool:
        """Whether to stop now; processes vote at logging steps and sync points."""
        import jax  # Imported here: the commands install the other handlers before JAX loads.
        from jax.experimental import multihost_utils

        if jax.process_count() == 1:
            return self._requested.is_set()
        if step % log_every_steps and not at_sync_point:
            return False
        votes = multihost_utils.process_allgather(np.int32(self._requested.is_set()))
        return bool(np.max(votes))
