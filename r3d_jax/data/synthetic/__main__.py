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

_SCHEMA = defaults.get_config().data.synthetic
_DATASET = flags.DEFINE_enum('dataset', None, list(synthetic.LAYOUTS), 'The layout to write.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Absent or empty directory.')
_WORKERS = flags.DEFINE_integer('workers', 0, 'Encoding processes; 0: one per CPU core.')
_PARAMETERS = {
    'num_classes': flags.DEFINE_integer('num_classes', _SCHEMA.num_classes, 'Classes (motions).'),
    'num_groups': flags.DEFINE_integer('num_groups', _SCHEMA.num_groups, 'Groups per class.'),
    'clips_per_group': flags.DEFINE_integer(
        'clips_per_group', _SCHEMA.clips_per_group, 'Videos per group (ActivityNet: segments).'
    ),
    'min_frames': flags.DEFINE_integer('min_frames', _SCHEMA.min_frames, 'Shortest video.'),
    'max_frames': flags.DEFINE_integer('max_frames', _SCHEMA.max_frames, 'Longest video.'),
    'seed': flags.DEFINE_integer('seed', _SCHEMA.seed, 'Everything random follows from it.'),
    'variant': flags.DEFINE_string('variant', _SCHEMA.variant, "The layout's form; '': usual."),
    'missing_fraction': flags.DEFINE_float(
        'missing_fraction', _SCHEMA.missing_fraction, 'Listed videos left out (downloads).'
    ),
    'corrupt_videos': flags.DEFINE_integer(
        'corrupt_videos', _SCHEMA.corrupt_videos, 'Truncated videos (downloads).'
    ),
}
flags.mark_flags_as_required(['dataset', 'output_dir'])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    parameters = {name: flag.value for name, flag in _PARAMETERS.items()}
    try:
        tree = synthetic.generate(
            _DATASET.value, _OUTPUT_DIR.value, workers=_WORKERS.value, **parameters
        )
    except (ValueError, FileExistsError) as error:
        sys.exit(f'error: {error}')
    print(f'Wrote synthetic {tree.dataset} to {tree.root}; build it with:')
    print('  ' + ' '.join(shlex.quote(f'--{flag}={path}') for flag, path in tree.sources.items()))


if __name__ == '__main__':
    app.run(main)
