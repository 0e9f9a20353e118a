"""Writes a synthetic dataset tree in a real dataset's layout (see `r3d_jax.data.synthetic`).

    python -m r3d_jax.data.synthetic --dataset=ucf101 --output_dir=data/synthetic_ucf101 \
        [--num_classes=10] [--num_groups=25] [--clips_per_group=4] [--min_frames=12] \
        [--max_frames=60] [--seed=0] [--variant=] [--missing_fraction=0.05] \
        [--corrupt_videos=1] [--workers=0]

Prints the build flags for the tree (e.g. `--videos_dir=... --splits_dir=...`).
"""

from __future__ import annotations

import shlex
import sys

from absl import app, flags

from r3d_jax import defaults
from r3d_jax.data import synthetic

FLAGS = flags.FLAGS
# The generator's parameters that are flags, each defaulting to `config.data.synthetic`'s value.
PARAMETERS = {
    'num_classes': 'Classes (motions).',
    'num_groups': 'Groups per class.',
    'clips_per_group': 'Videos per group (ActivityNet: segments).',
    'min_frames': 'Shortest video.',
    'max_frames': 'Longest video.',
    'seed': 'Everything random follows from it.',
    'variant': "The layout's form; '': usual.",
    'missing_fraction': 'Listed videos left out (downloads).',
    'corrupt_videos': 'Truncated videos (downloads).',
}
_DEFINE_BY_TYPE = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_flags() -> None:
    """The command's flags, defined when it starts (see `r3d_jax.cli.common.start`)."""
    schema = defaults.get_config().data.synthetic
    flags.DEFINE_enum('dataset', None, list(synthetic.LAYOUTS), 'The layout to write.')
    flags.DEFINE_string('output_dir', None, 'Absent or empty directory.')
    flags.DEFINE_integer('workers', 0, 'Encoding processes; 0: one per CPU core.')
    for name, help_text in PARAMETERS.items():
        _DEFINE_BY_TYPE[type(schema[name])](name, schema[name], help_text)
    flags.mark_flags_as_required(['dataset', 'output_dir'])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    parameters = {name: FLAGS[name].value for name in PARAMETERS}
    try:
        tree = synthetic.generate(
            FLAGS.dataset, FLAGS.output_dir, workers=FLAGS.workers, **parameters
        )
    except (ValueError, FileExistsError) as error:
        sys.exit(f'error: {error}')
    print(f'Wrote synthetic {tree.dataset} to {tree.root}; build it with:')
    print('  ' + ' '.join(shlex.quote(f'--{flag}={path}') for flag, path in tree.sources.items()))


if __name__ == '__main__':
    from r3d_jax.cli import common

    common.start(__doc__, main, define_flags)
