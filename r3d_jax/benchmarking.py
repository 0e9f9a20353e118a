"""What the benchmark scripts share: step timing, atomic JSON reports, versions, device peaks.

Kept free of JAX and PyTorch imports, so a script's parent process can use it without taking
a device from the measurements it runs in processes of their own.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

# Dense (not sparse) bf16 tensor-core peaks from NVIDIA's data sheets, in TFLOP/s, matched in
# this order against the device name. The H200 has the H100 SXM's tensor cores and clocks.
BF16_DENSE_PEAK_TFLOPS = (
    ('H100 PCIe', 756.0),
    ('H100 NVL', 835.0),
    ('H200 NVL', 835.0),
    ('H100', 989.0),
    ('H200', 989.0),
    ('A100', 312.0),
    ('L40S', 362.0),
)
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'torch')


def bf16_dense_peak_tflops(device_name: str) -> float | None:
    """The data-sheet dense bf16 peak of a known GPU, else None."""
    for pattern, tflops in BF16_DENSE_PEAK_TFLOPS:
        if pattern.lower() in device_name.lower():
            return tflops
    return None


def time_steps(
    step: Callable[[], Any], wait: Callable[[Any], Any], warmup_steps: int, timed_steps: int
) -> tuple[dict[str, Any], Any]:
    """Timings of `step` after `warmup_steps` calls, and its last output.

    The first warm-up call compiles; its time is reported apart. Then `timed_steps` calls are
    each waited for (`step_ms`), and as many again run back to back (`back_to_back_ms`, per step).
    """
    start = time.perf_counter()
    output = step()
    wait(output)
    first_step_seconds = time.perf_counter() - start
    for _ in range(warmup_steps - 1):
        output = step()
        wait(output)
    step_ms = []
    for _ in range(timed_steps):
        start = time.perf_counter()
        output = step()
        wait(output)
        step_ms.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(timed_steps):
        output = step()
    wait(output)
    timing = {
        'first_step_seconds': first_step_seconds,
        'back_to_back_ms': 1000 * (time.perf_counter() - start) / timed_steps,
        'waited_median_ms': statistics.median(step_ms),
        'step_ms': step_ms,
    }
    return timing, output


def write_json_atomically(path: str, data: Any) -> None:
    """Readers see the previous file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f'{path}.tmp'
    with open(temporary, 'w') as file:
        json.dump(data, file, indent=2)
    os.replace(temporary, path)


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Python's version and each installed package's (None where it is not installed)."""
    found: dict[str, str | None] = {'python': platform.python_version()}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found
