"""JAX's platform chosen before JAX starts, and the devices named as the first line says them."""

from __future__ import annotations

import os
import subprocess
import sys

from r3d_jax import backends
from tests.test_training import REPO


def test_the_cpu_is_chosen_where_no_accelerator_is_present(monkeypatch):
    monkeypatch.setattr(backends, 'nvidia_driver_present', lambda: False)
    monkeypatch.setattr(backends, 'tpu_runtime_installed', lambda: False)
    environ = {}

    assert backends.choose_platform(environ) == 'cpu'
    assert environ == {'JAX_PLATFORMS': 'cpu'}


def test_a_users_platform_and_an_nvidia_driver_are_respected(monkeypatch):
    monkeypatch.setattr(backends, 'tpu_runtime_installed', lambda: False)
    monkeypatch.setattr(backends, 'nvidia_driver_present', lambda: False)
    chosen = {'JAX_PLATFORMS': 'cuda'}
    assert backends.choose_platform(chosen) is None and chosen == {'JAX_PLATFORMS': 'cuda'}

    monkeypatch.setattr(backends, 'nvidia_driver_present', lambda: True)
    environ = {}
    assert backends.choose_platform(environ) is None and environ == {}


def test_jax_starts_without_a_traceback_where_no_driver_is_present():
    """With jax[cuda12]'s plugin installed and no driver, JAX would log the plugin's failure."""
    probe = 'from r3d_jax import backends; backends.choose_platform(); import jax; jax.devices()'
    environment = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}

    result = subprocess.run(
        [sys.executable, '-c', probe],
        cwd=REPO,
        env={**environment, 'PYTHONPATH': REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr and 'plugin' not in result.stderr, result.stderr


def test_devices_are_counted_by_kind():
    assert backends.describe_devices(['cpu'] * 4) == '4 x CPU'
    assert backends.describe_devices(['NVIDIA H100 80GB HBM3'] * 8) == '8 x NVIDIA H100 80GB HBM3'
    assert (
        backends.describe_devices(['cpu'] * 2, process_index=1, process_count=2, total=4)
        == '2 x CPU (process 1 of 2; 4 devices in all)'
    )


def test_versions_name_python_and_the_installed_distributions():
    found = backends.versions(('jax', 'flax', 'no-such-distribution'))

    assert set(found) == {'python', 'jax', 'flax'}
    assert backends.format_versions(found) == f'JAX {found["jax"]}, Flax {found["flax"]}'
