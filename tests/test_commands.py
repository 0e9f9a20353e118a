"""The package's commands: importable together, each defining its flags only when it starts.

A command that defined its flags at import would make any program (a notebook, a test, the
installed package's import check) that imports two commands with a shared flag name fail with
absl's DuplicateFlagError.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest
from absl import flags

import r3d_jax
from tests.test_training import REPO, subprocess_environment


def test_every_module_of_the_package_imports_into_one_process_without_defining_flags():
    before = set(flags.FLAGS)
    for module in pkgutil.walk_packages(r3d_jax.__path__, 'r3d_jax.'):
        importlib.import_module(module.name)
    assert set(flags.FLAGS) - before == set()


@pytest.mark.parametrize(
    ('module', 'flag'),
    [('r3d_jax.data.build', '--videos_dir'), ('r3d_jax.data.synthetic', '--num_groups')],
)
def test_data_commands_list_their_flags_in_help(module, flag):
    result = subprocess.run(
        [sys.executable, '-m', module, '--help'], cwd=REPO, env=subprocess_environment(1),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert flag in result.stdout
    assert 'Traceback' not in result.stderr
