r"""Builds a dataset of any layout into TFRecords of JPEG frames: offline, resumable, atomic.

    python -m r3d_jax.data.build --dataset=ucf101 --videos_dir=UCF-101 \
        --splits_dir=ucfTrainTestlist --split=1 --data_dir=data/tfds
    python -m r3d_jax.data.build --dataset=hmdb51 --videos_dir=hmdb51_org \
        --splits_dir=testTrainMulti_7030_splits --split=1 --data_dir=data/tfds
    python -m r3d_jax.data.build --dataset=video_list --video_list_name=my_clips \
        --videos_dir=my_clips [--splits_dir=my_clips/lists] --data_dir=data/tfds
    python -m r3d_jax.data.build --dataset=kinetics --kinetics_version=400 \
        --videos_dir=k400/videos --train_csv=k400/annotations/train.csv \
        --val_csv=k400/annotations/val.csv --data_dir=data/tfds
    python -m r3d_jax.data.build --dataset=activitynet --videos_dir=activitynet/videos \
        --annotations=activity_net.v1-3.min.json --data_dir=data/tfds

Common flags: `--frame_short_side=128` (stored frame size), `--jpeg_quality=90`, `--workers=0`
(decoding processes; 0: one per CPU core), `--max_skip_fraction` (share of a split that may be
missing or undecodable; default: 0 for UCF-101, HMDB-51 and video lists, 0.2 for Kinetics and
ActivityNet), `--beam_runner=DirectRunner --beam_options=direct_num_workers=4,...` (decode in
an Apache Beam pipeline instead; `pip install -r requirements-beam.txt`).

The build never touches the network. Killed, it leaves nothing that loads as complete, and the
same command run again reuses the videos already decoded (`<dataset dir>.partial/`).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from r3d_jax import defaults
from r3d_jax.data import build_cache, layouts

_DEFAULTS = defaults.get_config().data
SOURCE_FLAGS = ('videos_dir', 'splits_dir', 'train_csv', 'val_csv', 'annotations')
# The `config.data` fields of every layout's identity, each set by its flag (`layouts.flag_of`).
IDENTITY_FIELDS = sorted({field for layout in layouts.LAYOUTS.values()
                          for field in layout.config_fields})

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags, defined when it starts (see `r3d_jax.cli.common.start`)."""
    flags.DEFINE_enum('dataset', None, sorted(layouts.LAYOUTS), 'The dataset layout.')
    flags.DEFINE_string('videos_dir', '', 'The videos (every layout).')
    flags.DEFINE_string('splits_dir', '', 'UCF-101, HMDB-51: the split files; video_list: the lists.')
    flags.DEFINE_string('train_csv', '', 'Kinetics: the training annotations CSV.')
    flags.DEFINE_string('val_csv', '', 'Kinetics: the validation annotations CSV.')
    flags.DEFINE_string('annotations', '', 'ActivityNet: activity_net.v1-3.min.json.')
    flags.DEFINE_integer('split', _DEFAULTS.split_number, 'UCF-101, HMDB-51: official split 1-3.')
    flags.DEFINE_integer('kinetics_version', _DEFAULTS.kinetics_version, 'Kinetics: 400, 600, 700.')
    flags.DEFINE_string('video_list_name', _DEFAULTS.video_list_name,
                        'video_list: the name of your dataset on disk.')
    flags.DEFINE_float('video_list_test_fraction', _DEFAULTS.video_list_test_fraction,
                       'video_list from class folders: share of each class held out for testing.')
    flags.DEFINE_integer('video_list_seed', _DEFAULTS.video_list_seed,
                         'video_list from class folders: the seed that draws the test videos.')
    flags.DEFINE_string('data_dir', None, 'TFDS data directory to write.')
    flags.DEFINE_integer('frame_short_side', _DEFAULTS.frame_short_side, 'Stored frame short side.')
    flags.DEFINE_integer('jpeg_quality', _DEFAULTS.jpeg_quality, 'Stored JPEG quality.')
    flags.DEFINE_float('max_skip_fraction', None,
                       "Largest share of a split that may be skipped; default: the layout's.")
    flags.DEFINE_integer('workers', 0, 'Decoding processes; 0: one per CPU core.')
    flags.DEFINE_integer('chunk_size', build_cache.DEFAULT_CHUNK_SIZE,
                         'Videos per chunk of the resumable build cache.')
    flags.DEFINE_string('beam_runner', '', 'Decode with Apache Beam on this runner (DirectRunner...).')
    flags.DEFINE_string('beam_options', '', 'Beam pipeline options: key=value,key=value.')
    flags.mark_flags_as_required(['dataset', 'data_dir'])


def data_config_from_flags() -> tuple[object, dict[str, str]]:
    """`config.data` and the sources the flags describe; flags of other layouts are errors."""
    layout = layouts.get(FLAGS.dataset)
    data = defaults.get_config().data
    data.dataset = FLAGS.dataset
    data.data_dir = FLAGS.data_dir
    data.frame_short_side = FLAGS.frame_short_side
    data.jpeg_quality = FLAGS.jpeg_quality
    for field in IDENTITY_FIELDS:
        flag = layouts.flag_of(field)
        if FLAGS[flag].present and field not in layout.config_fields:
            raise ValueError(f'--dataset={layout.name} does not use --{flag}.')
        data[field] = FLAGS[flag].value
    if FLAGS.max_skip_fraction is not None:
        data.max_skip_fraction = FLAGS.max_skip_fraction
    return data, {flag: FLAGS[flag].value for flag in SOURCE_FLAGS}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow loads below, for the write.
    # Imported here: decoding processes import this module again and must stay light.
    from r3d_jax.data import datasets, frames_builder

    try:
        data, sources = data_config_from_flags()
        datasets.build_dataset(
            data,
            sources,
            workers=FLAGS.workers,
            chunk_size=FLAGS.chunk_size,
            beam_runner=FLAGS.beam_runner,
            beam_options=FLAGS.beam_options,
        )
    except (
        layouts.SourceError,
        frames_builder.SkippedVideosError,
        frames_builder.BeamNotInstalledError,
        build_cache.ChunkError,
        ValueError,
    ) as error:
        sys.exit(f'error: {error}')


def run() -> None:
    """The `r3d-build` command (`python -m r3d_jax.data.build`)."""
    from r3d_jax.cli import common

    common.start(__doc__, main, define_flags)


if __name__ == '__main__':
    run()
