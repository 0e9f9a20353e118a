"""Test set-up: JAX on the CPU with four forced devices, so the pmap paths run everywhere.

The run shares one persistent compilation cache between its xdist workers and the processes the
tests start: many tests compile the same small programs (a training step, an evaluation pass),
and on a CPU compiling takes most of their time. Its size limit turns on JAX's file lock, which
keeps concurrent writers and readers of an entry apart. The process that made it removes it.
"""

import os
import shutil
import tempfile

os.environ['JAX_PLATFORMS'] = 'cpu'
os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

# xdist's workers inherit the controller's cache; anything else (the controller, a run without
# xdist) makes its own, so a run never reads entries that another left behind.
OWNS_COMPILATION_CACHE = 'PYTEST_XDIST_WORKER' not in os.environ
if OWNS_COMPILATION_CACHE:
    os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='r3d-jax-tests-xla-')
    os.environ['JAX_COMPILATION_CACHE_MAX_SIZE'] = str(4 * 2**30)


def pytest_unconfigure(config):
    if OWNS_COMPILATION_CACHE:
        shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
