"""What the training loop measures around its steps.

`StepMetrics` reads each step's metrics one step behind (the device always has the next step
queued) and stops a run whose loss or parameters stopped being finite; `Throughput` and
`batches_with_wait` give clips per second and the share of time spent waiting for input.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np


class TrainingDivergedError(RuntimeError):
    """The loss or the parameters stopped being finite; the diverged state is never saved."""


class StepMetrics:
    """Training metrics read one step behind, so the device always has the next step queued.

    Reading a step's metrics also checks that it kept the loss and the state finite; a
    diverged step raises before anything can save its state.
    """

    def __init__(self) -> None:
        self._in_flight: tuple[int, dict[str, jax.Array]] | None = None
        self._collected: list[dict[str, np.ndarray]] = []

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.settle()
        self._in_flight = (step, metrics)

    def settle(self) -> None:
        """Waits for the step in flight and checks it."""
        if self._in_flight is None:
            return
        step, metrics = self._in_flight
        self._in_flight = None
        host = jax.device_get(metrics)
        if not host['finite']:
            raise TrainingDivergedError(
                f'Training diverged at step {step}: the loss ({float(host["loss"])}) or the '
                'parameters are no longer finite. The diverged state was not saved; lower '
                'config.optimizer.learning_rate or check the data.'
            )
        self._collected.append(host)

    def summary(self) -> dict[str, float]:
        """Means since the last summary."""
        self.settle()
        collected, self._collected = self._collected, []
        return {
            key: float(np.mean([m[key] for m in collected]))
            for key in ('loss', 'accuracy', 'learning_rate')
        }


def batches_with_wait(batches: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Each batch with the seconds spent waiting for it."""
    while True:
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        yield batch, time.perf_counter() - start


class Throughput:
    """Clips per second and the share of wall time spent waiting for input, per interval."""

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        self._start, self._waited, self._steps = time.perf_counter(), 0.0, 0

    def add(self, waited: float) -> None:
        self._waited += waited
        self._steps += 1

    def read(self) -> dict[str, float]:
        """The interval's figures; starts the next interval."""
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        figures = {
            'clips_per_second': self._steps * self._batch_size / elapsed,
            'input_wait_fraction': self._waited / elapsed,
        }
        self.reset()
        return figures
