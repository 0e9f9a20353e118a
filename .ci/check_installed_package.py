"""Checks an installed r3d-jax from outside the checkout: its commands start, its modules import.

    python .ci/check_installed_package.py CHECKOUT   # Run from a directory outside CHECKOUT.

Fails if `r3d_jax` is imported from the checkout rather than the installed package, if one of its
commands does not print its help (absl exits with status 1 after `--help`), or if a module of the
package does not import. A module is skipped only when what it cannot import is an optional extra
(PyTorch, Apache Beam) that is not installed, and the skip is printed.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

OPTIONAL_EXTRAS = {'torch': 'requirements-torch.txt', 'apache_beam': 'requirements-beam.txt'}
COMMANDS = {
    'r3d-train': '--workdir',
    'r3d-eval': '--checkpoint',
    'r3d-predict': '--top_k',
    'r3d-build': '--videos_dir',
    'r3d-convert': '--to_torch',
    'r3d-export': '--output',
}


def check_location(checkout: str) -> list[str]:
    import r3d_jax

    location = os.path.realpath(r3d_jax.__file__)
    if location.startswith(os.path.realpath(checkout) + os.sep):
        return [f'r3d_jax was imported from the checkout ({location}), not the installed wheel']
    print(f'r3d_jax imported from {os.path.dirname(location)}')
    return []


def check_commands() -> list[str]:
    failures = []
    for command, flag in COMMANDS.items():
        path = os.path.join(os.path.dirname(sys.executable), command)
        result = subprocess.run([path, '--help'], capture_output=True, text=True, timeout=300)
        helped = result.returncode in (0, 1) and flag in result.stdout
        if not helped or 'Traceback' in result.stderr:
            failures.append(
                f'{command} --help exited {result.returncode}; stdout:\n{result.stdout[-2000:]}'
                f'\nstderr:\n{result.stderr[-2000:]}'
            )
        else:
            print(f'{command} --help lists {flag}')
    return failures


def check_imports() -> list[str]:
    import r3d_jax

    failures, imported = [], 0
    for module in pkgutil.walk_packages(r3d_jax.__path__, 'r3d_jax.'):
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as error:
            missing = (error.name or '').split('.')[0]
            if missing in OPTIONAL_EXTRAS:
                print(f'skipped {module.name}: needs {missing} ({OPTIONAL_EXTRAS[missing]})')
                continue
            failures.append(f'{module.name}: {error!r}')
        except Exception as error:
            failures.append(f'{module.name}: {error!r}')
        else:
            imported += 1
    print(f'{imported} modules of r3d_jax imported')
    return failures


def main() -> None:
    checkout = sys.argv[1]
    failures = check_location(checkout) + check_commands() + check_imports()
    if failures:
        sys.exit('Installed package check failed:\n' + '\n'.join(failures))


if __name__ == '__main__':
    main()
