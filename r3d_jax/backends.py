"""Which JAX backend a command runs on, chosen before JAX starts, and how to describe it.

`jax[cuda12]` installs JAX's CUDA plugin everywhere. On a machine without an NVIDIA driver the
plugin fails to initialise and JAX logs that failure with a traceback before falling back to the
CPU, which reads as if the command had failed. `choose_platform` selects the CPU up front on
such machines, so JAX never tries the plugin; a `JAX_PLATFORMS` the user set is always kept.
"""

from __future__ import annotations

import collections
import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

NVIDIA_DRIVER_FILE = '/proc/driver/nvidia/version'
CUDA_DRIVER_LIBRARY = 'libcuda.so.1'
# Distributions whose versions a recorded figure depends on, in the order they are reported.
REPORTED_DISTRIBUTIONS = (
    'jax',
    'jaxlib',
    'flax',
    'optax',
    'orbax-checkpoint',
    'tensorflow-cpu',
    'tensorflow-datasets',
    'av',
    'numpy',
)


def nvidia_driver_present() -> bool:
    """Whether the kernel runs an NVIDIA driver and its user-space library can be loaded."""
    if not os.path.exists(NVIDIA_DRIVER_FILE):
        return False
    try:
        ctypes.CDLL(CUDA_DRIVER_LIBRARY)
    except OSError:
        return False
    return True


def tpu_runtime_installed() -> bool:
    """Whether libtpu, through which JAX reaches TPUs, is installed."""
    return importlib.util.find_spec('libtpu') is not None


def choose_platform(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Sets `JAX_PLATFORMS=cpu` when no accelerator JAX could use is present; returns it.

    Leaves a `JAX_PLATFORMS` already in `environ` alone (and returns None then, as when an
    accelerator is present). Call it before JAX initialises a backend: the environment reaches
    JAX imported later and the processes this one starts; an already imported JAX is updated
    through its config.
    """
    if 'JAX_PLATFORMS' in environ or nvidia_driver_present() or tpu_runtime_installed():
        return None
    environ['JAX_PLATFORMS'] = 'cpu'
    if 'jax' in sys.modules and environ is os.environ:
        sys.modules['jax'].config.update('jax_platforms', 'cpu')
    return 'cpu'


def describe_devices(
    local_kinds: Sequence[str], *, process_index: int = 0, process_count: int = 1, total: int = 0
) -> str:
    """'4 x CPU', '8 x NVIDIA H100 80GB HBM3', with the process when there are several."""
    counts = collections.Counter('CPU' if kind.lower() == 'cpu' else kind for kind in local_kinds)
    described = ', '.join(f'{count} x {kind}' for kind, count in counts.items())
    if process_count > 1:
        described += f' (process {process_index} of {process_count}; {total} devices in all)'
    return described


def jax_devices() -> str:
    """`describe_devices` of the devices JAX uses in this process."""
    import jax

    return describe_devices(
        [device.device_kind for device in jax.local_devices()],
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        total=jax.device_count(),
    )


def versions(distributions: Sequence[str] = REPORTED_DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions of `distributions` (those installed), plus Python's."""
    found = {'python': platform.python_version()}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def environment() -> dict[str, Any]:
    """What a recorded figure came from: devices, machine and versions (JSON-ready)."""
    return {
        'devices': jax_devices(),
        'machine': f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores',
        'versions': versions(),
    }


def format_versions(found: Mapping[str, str], names: Sequence[str] = ('jax', 'flax')) -> str:
    """'JAX 0.10.2, Flax 0.12.8': the versions a user compares first."""
    shown = {'jax': 'JAX', 'flax': 'Flax', 'python': 'Python'}
    return ', '.join(f'{shown.get(name, name)} {found[name]}' for name in names if name in found)
