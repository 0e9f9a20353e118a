"""Builds UCF-101 (or its synthetic stand-in) into TFRecords of JPEG frames, offline.

    python -m r3d_jax.data.build_ucf101 --videos_dir=UCF-101 --splits_dir=ucfTrainTestlist \\
        --data_dir=data/tfds --split=1 --frame_short_side=128 --workers=16

The build never touches the network. It is atomic: TFDS writes into an `incomplete.*` directory
and renames it into place only after every video is written and the counts are checked, so an
interrupted build leaves nothing that loads as complete, and rerunning the command rebuilds.
A video that cannot be decoded is reported by path; the build then fails unless
`--allow_skips`, in which case the skipped files are listed and recorded in the dataset's
metadata (`skipped_videos`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

import ml_collections
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import gcs_utils

from r3d_jax import console
from r3d_jax.data import synthetic, ucf101

IF_MISSING_CHOICES = ('', 'synthetic')


def _forbid_network() -> None:
    """TFDS can fetch prepared datasets and their metadata from GCS; this build never may."""
    gcs_utils._is_gcs_disabled = True


def _download_config(videos_dir: str) -> tfds.download.DownloadConfig:
    """No GCS, no download: the videos directory is the only source."""
    return tfds.download.DownloadConfig(
        manual_dir=videos_dir,
        try_download_gcs=False,
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
    )


def build_dataset(
    videos_dir: str,
    splits_dir: str,
    data_dir: str,
    *,
    split_number: int = 1,
    frame_short_side: int = 128,
    workers: int = 0,
    allow_skips: bool = False,
) -> str:
    """Builds one (split, frame size) configuration and returns its dataset directory.

    Reuses a complete build; removes what an interrupted build left and builds again.
    `workers=0` decodes with one process per CPU core. The decoding processes are spawned, so
    each imports the launching script (its `__main__`) again: keep its top level light and its
    work under `if __name__ == '__main__':`.
    """
    _forbid_network()
    directory = ucf101.dataset_dir(data_dir, split_number, frame_short_side)
    if ucf101.is_built(directory):
        print(f'{directory} is already built.')
        return directory
    console.phase(f'Building the frames dataset {directory} from {videos_dir}')
    builder = ucf101.Ucf101Frames(
        videos_dir=os.path.abspath(videos_dir),
        splits_dir=os.path.abspath(splits_dir),
        workers=workers,
        allow_skips=allow_skips,
        data_dir=os.path.abspath(data_dir),
        config=ucf101.builder_config(split_number, frame_short_side),
    )
    for leftover in ucf101.interrupted_builds(directory):
        print(f'Removing {leftover}, left by an interrupted build.')
        shutil.rmtree(leftover)
    # TFDS creates download and extraction folders even when nothing is downloaded.
    with tempfile.TemporaryDirectory() as scratch:
        builder.download_and_prepare(
            download_dir=scratch, download_config=_download_config(videos_dir)
        )
    print(f'Built {directory}')
    for split in ucf101.SPLITS:
        print(f'  {split}: {builder.info.splits[split].num_examples} videos')
    if builder.skipped:
        skipped = ucf101.describe_skipped(builder.skipped)
        print(f'Skipped {len(builder.skipped)} video(s):\n{skipped}')
    return directory


def ensure_dataset(data_config: ml_collections.ConfigDict) -> str:
    """The dataset directory of `config.data`, generating and building the synthetic one if asked.

    With `if_missing == 'synthetic'` and no complete build, the synthetic videos are generated
    into `raw_dir` (unless a tree generated with the same `synthetic` settings is there) and
    built; otherwise a missing dataset is an error that gives the build command.
    """
    if data_config.if_missing not in IF_MISSING_CHOICES:
        raise ValueError(
            f'config.data.if_missing must be one of {IF_MISSING_CHOICES}, '
            f'got {data_config.if_missing!r}.'
        )
    directory = ucf101.dataset_dir(
        data_config.data_dir, data_config.split_number, data_config.frame_short_side
    )
    if ucf101.is_built(directory):
        return directory
    if data_config.if_missing != 'synthetic':
        raise ucf101.DatasetNotBuiltError(
            ucf101.not_built_message(
                data_config.data_dir, data_config.split_number, data_config.frame_short_side
            )
        )
    wanted = data_config.synthetic.to_dict()
    found = synthetic.generated_parameters(data_config.raw_dir)
    if found is None:
        synthetic.generate(data_config.raw_dir, **wanted, workers=data_config.build_workers)
    elif found != wanted:
        raise ValueError(
            f'{data_config.raw_dir} holds synthetic videos generated with {found}, but '
            f'config.data.synthetic is {wanted}; delete it or set config.data.raw_dir elsewhere.'
        )
    return build_dataset(
        os.path.join(data_config.raw_dir, synthetic.VIDEOS_DIRNAME),
        os.path.join(data_config.raw_dir, synthetic.SPLITS_DIRNAME),
        data_config.data_dir,
        split_number=data_config.split_number,
        frame_short_side=data_config.frame_short_side,
        workers=data_config.build_workers,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--videos_dir', required=True, help='UCF-101/ with a folder per class.')
    parser.add_argument('--splits_dir', required=True, help='ucfTrainTestlist/.')
    parser.add_argument('--data_dir', required=True, help='TFDS data directory to write.')
    parser.add_argument('--split', type=int, default=1, choices=ucf101.SPLIT_NUMBERS)
    parser.add_argument('--frame_short_side', type=int, default=128)
    parser.add_argument('--workers', type=int, default=0, help='0: one per CPU core.')
    parser.add_argument(
        '--allow_skips', action='store_true', help='Build without videos that fail to decode.'
    )
    args = parser.parse_args(argv)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow loads lazily, in the build.
    tfds.disable_progress_bar()  # The build shows its own bar, with frame rate and ETA.
    try:
        build_dataset(
            args.videos_dir,
            args.splits_dir,
            args.data_dir,
            split_number=args.split,
            frame_short_side=args.frame_short_side,
            workers=args.workers,
            allow_skips=args.allow_skips,
        )
    except (
        ucf101.SplitFileError,
        ucf101.VideoTreeError,
        ucf101.SkippedVideosError,
        ValueError,
    ) as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
