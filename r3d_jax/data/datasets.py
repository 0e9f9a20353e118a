"""Where a frames dataset lives, how it is built, and how readers load it, for every layout.

`config.data` names a dataset: its layout (`dataset`), the layout's own fields (the split, the
Kinetics version, a video list's name...), the frame size and the JPEG quality. From that:

- `dataset_dir`: `<data_dir>/<layout>_frames/<config name>/1.0.0`, e.g.
  `data/tfds/ucf101_frames/split1_128px/1.0.0`;
- `build_dataset`: reads the layout's sources, decodes into the resumable build cache
  `<dataset dir>.partial/` (or in Apache Beam), writes the dataset atomically through TFDS and
  removes the cache; `python -m r3d_jax.data.build` is its command line;
- `load_builder`: the complete build, or an error that gives the exact build command;
- `ensure_dataset`: what the trainer calls, generating and building the synthetic stand-in
  when `config.data.if_missing == 'synthetic'`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping

import ml_collections
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import gcs_utils

from r3d_jax import console
from r3d_jax.data import build_cache, frames_builder, layouts, synthetic
from r3d_jax.data.layouts import DatasetContents, Layout
from r3d_jax.data.video_decoding import JPEG_QUALITY

IF_MISSING_CHOICES = ('', 'synthetic')
BUILD_MODULE = 'r3d_jax.data.build'


class DatasetNotBuiltError(FileNotFoundError):
    """No complete build of the requested dataset exists."""


def dataset_dir(data: ml_collections.ConfigDict) -> str:
    """Where a complete build of `config.data` lives."""
    layout = layouts.get(data.dataset)
    return os.path.join(
        os.path.abspath(data.data_dir),
        layouts.dataset_name(layout),
        layouts.config_name(data),
        frames_builder.DATASET_VERSION,
    )


def cache_dir(data: ml_collections.ConfigDict) -> str:
    """The build cache of `config.data`: decoded chunks kept until the dataset is complete."""
    return f'{dataset_dir(data)}.partial'


def is_built(directory: str) -> bool:
    """TFDS writes dataset_info.json last and then renames the directory into place."""
    return os.path.isfile(os.path.join(directory, 'dataset_info.json'))


def interrupted_builds(directory: str) -> list[str]:
    """Staging directories TFDS left beside `directory` when its final write was killed."""
    parent, version = os.path.split(directory)
    return sorted(glob.glob(os.path.join(glob.escape(parent), f'incomplete.*_{version}')))


def build_command(data: ml_collections.ConfigDict) -> str:
    """The command that builds `config.data`, with placeholders for the source paths."""
    layout = layouts.get(data.dataset)
    parts = [f'python -m {BUILD_MODULE} --dataset={layout.name}']
    for flag, placeholder in layout.sources.items():
        part = f'--{flag}={placeholder}'
        parts.append(f'[{part}]' if flag in layout.optional_sources else part)
    parts += [f'--{layouts.flag_of(field)}={data[field]}' for field in layout.config_fields]
    parts += [f'--data_dir={data.data_dir}', f'--frame_short_side={data.frame_short_side}']
    if data.jpeg_quality != JPEG_QUALITY:
        parts.append(f'--jpeg_quality={data.jpeg_quality}')
    return ' '.join(parts)


def not_built_message(data: ml_collections.ConfigDict) -> str:
    directory = dataset_dir(data)
    title = layouts.get(data.dataset).title
    message = f'No complete {title} frames dataset at {directory}.'
    leftovers = interrupted_builds(directory)
    if leftovers:
        message += f' An interrupted build left {", ".join(leftovers)}; rerun the build.'
    if os.path.isdir(cache_dir(data)):
        message += f' A build was interrupted; rerunning it reuses what {cache_dir(data)} holds.'
    return (
        f'{message}\nBuild it with:\n  {build_command(data)}\n'
        "or set config.data.if_missing='synthetic' to generate and build a synthetic stand-in."
    )


def load_builder(data: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """The TFDS builder of a complete build, read from its directory (no videos needed)."""
    directory = dataset_dir(data)
    if not is_built(directory):
        raise DatasetNotBuiltError(not_built_message(data))
    builder = tfds.builder_from_directory(directory)
    missing = [
        split for split in (data.train_split, data.eval_split) if split not in builder.info.splits
    ]
    if missing:
        raise DatasetNotBuiltError(
            f'{directory} has no {" or ".join(missing)} split (it has '
            f'{", ".join(builder.info.splits)}); set config.data.train_split and eval_split.'
        )
    return builder


# ---------------------------------------------------------------------------------------------
# Building.


def max_skip_fraction(data: ml_collections.ConfigDict) -> float:
    """`config.data.max_skip_fraction`, or the layout's own when it is negative."""
    fraction = data.max_skip_fraction
    if fraction < 0:
        return layouts.get(data.dataset).max_skip_fraction
    if fraction > 1:
        raise ValueError(f'config.data.max_skip_fraction must be at most 1, got {fraction}.')
    return fraction


def check_sources(layout: Layout, sources: Mapping[str, str]) -> dict[str, str]:
    """The given sources as absolute paths; a missing one or one of another layout is an error."""
    given = {flag: path for flag, path in sources.items() if path}
    unused = sorted(set(given) - set(layout.sources))
    if unused:
        raise ValueError(
            f'--dataset={layout.name} does not read {", ".join(f"--{f}" for f in unused)}; it '
            f'reads {", ".join(f"--{f}" for f in layout.sources)}.'
        )
    lacking = [f for f in layout.sources if f not in given and f not in layout.optional_sources]
    if lacking:
        raise ValueError(
            f'--dataset={layout.name} needs {", ".join(f"--{f}" for f in lacking)} '
            f'({"; ".join(layout.sources[f] for f in lacking)}).'
        )
    return {flag: os.path.abspath(path) for flag, path in given.items()}


def contents_digest(contents: DatasetContents) -> str:
    """What the dataset holds (classes, and each split's ids, labels and segments), hashed."""
    summary = [
        contents.class_names,
        {
            split: [(e.video_id, e.label, e.segment) for e in entries]
            for split, entries in contents.splits.items()
        },
    ]
    return hashlib.sha256(json.dumps(summary).encode()).hexdigest()


def _forbid_network() -> None:
    """TFDS can fetch prepared datasets and their metadata from GCS; this build never may."""
    gcs_utils._is_gcs_disabled = True


def _check_built_contents(directory: str, digest: str) -> None:
    recorded = tfds.builder_from_directory(directory).info.metadata.get('build', {})
    if recorded.get('contents_digest', digest) != digest:
        raise ValueError(
            f'{directory} is built from other lists or annotations than these (the dataset '
            'name, split and version are what identify a dataset on disk): delete it, or build '
            'these under another name (--video_list_name for your own videos).'
        )


def build_dataset(
    data: ml_collections.ConfigDict,
    sources: Mapping[str, str],
    *,
    workers: int = 0,
    chunk_size: int = build_cache.DEFAULT_CHUNK_SIZE,
    beam_runner: str = '',
    beam_options: str = '',
) -> str:
    """Builds `config.data` from `sources` (build flag values) and returns its directory.

    Reuses a complete build of the same contents. Locally, decodes with `workers` processes (0:
    one per CPU core) into the build cache, reusing the chunks an interrupted build of the same
    parameters left; with `beam_runner`, decodes in an Apache Beam pipeline instead. The
    decoding processes are spawned, so each imports the launching script (its `__main__`)
    again: keep its top level light and its work under `if __name__ == '__main__':`.
    """
    _forbid_network()
    tfds.disable_progress_bar()  # The build shows its own bars, with rates and ETA.
    layout = layouts.get(data.dataset)
    sources = check_sources(layout, sources)
    if beam_runner:
        frames_builder.import_beam()
    fraction = max_skip_fraction(data)
    directory = dataset_dir(data)
    contents = layout.read_contents(sources, data)
    digest = contents_digest(contents)
    if is_built(directory):
        _check_built_contents(directory, digest)
        console.note(f'{directory} is already built.')
        return directory
    console.phase(f'Building the {layout.title} frames dataset {directory}')
    build_record = {
        'dataset': layout.name,
        'sources': dict(sources),
        'config': {field: data[field] for field in layout.config_fields},
        'frame_short_side': data.frame_short_side,
        'jpeg_quality': data.jpeg_quality,
        'contents_digest': digest,
    }
    config = frames_builder.FramesConfig(
        name=layouts.config_name(data),
        frame_short_side=data.frame_short_side,
        jpeg_quality=data.jpeg_quality,
    )
    chunks = None
    if not beam_runner:
        chunks = _decode_into_cache(data, contents, fraction, workers, chunk_size)
    builder = frames_builder.builder_class(layout)(
        contents=contents,
        chunks=chunks,
        max_skip_fraction=fraction,
        build_record=build_record,
        data_dir=os.path.abspath(data.data_dir),
        config=config,
    )
    assert builder.data_dir == directory, (builder.data_dir, directory)
    for leftover in interrupted_builds(directory):
        console.note(f'Removing {leftover}, left by an interrupted build.')
        shutil.rmtree(leftover)
    console.note('Writing the dataset' + (f' with Beam ({beam_runner})' if beam_runner else ''))
    download_config = tfds.download.DownloadConfig(
        try_download_gcs=False,
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
        beam_runner=beam_runner or None,
        beam_options=frames_builder.beam_pipeline_options(beam_options) if beam_runner else None,
    )
    # TFDS creates download and extraction folders even when nothing is downloaded.
    with tempfile.TemporaryDirectory() as scratch:
        builder.download_and_prepare(download_dir=scratch, download_config=download_config)
    shutil.rmtree(cache_dir(data), ignore_errors=True)
    _print_report(directory, builder)
    return directory


def _decode_into_cache(
    data: ml_collections.ConfigDict,
    contents: DatasetContents,
    fraction: float,
    workers: int,
    chunk_size: int,
) -> dict[str, list[build_cache.Chunk]]:
    """The decode phase of a local build: fills the build cache, then checks the skips."""
    cache = cache_dir(data)
    decoding = build_cache.Decoding(data.frame_short_side, data.jpeg_quality)
    os.makedirs(cache, exist_ok=True)
    chunks = build_cache.plan_chunks(contents, decoding, cache, chunk_size)
    build_cache.remove_stale_files(cache, chunks)
    num_workers = workers or os.cpu_count() or 1
    plural = 'es' if num_workers > 1 else ''
    console.note(f'Decoding the videos with {num_workers} worker process{plural}')
    build_cache.fill(chunks, decoding, num_workers)
    outcomes = [
        outcome
        for split_chunks in chunks.values()
        for chunk in split_chunks
        for outcome in build_cache.read_outcomes(chunk.path)
    ]
    try:
        frames_builder.check_skips(
            frames_builder.split_reports(outcomes, list(contents.splits)), outcomes, fraction
        )
    except frames_builder.SkippedVideosError as error:
        raise frames_builder.SkippedVideosError(
            f'{error}\nThe decoded videos stay in {cache}: a rerun reuses them.'
        ) from None
    return chunks


def _print_report(directory: str, builder: frames_builder.FramesBuilder) -> None:
    print(f'Built {directory}')
    for split, report in builder.reports.items():
        codecs = ', '.join(f'{name} {count}' for name, count in report.codecs.items())
        print(f'  {split}: {report.listed} listed, {report.found} found, {report.decoded} '
              f'decoded, {report.skipped} skipped ({codecs})')
    if builder.skipped:
        print(f'Skipped {len(builder.skipped)} video(s) (all recorded in the dataset metadata):\n'
              f'{frames_builder.describe_skipped(builder.skipped, 50)}')


# ---------------------------------------------------------------------------------------------
# For the trainer.


def ensure_dataset(data: ml_collections.ConfigDict) -> str:
    """The dataset directory of `config.data`, generating and building the synthetic one if asked.

    With `if_missing == 'synthetic'` and no complete build, synthetic videos in the layout's
    format are generated into `raw_dir` (unless a tree generated with the same
    `config.data.synthetic` settings is there) and built; otherwise a missing dataset is an
    error that gives the build command.
    """
    if data.if_missing not in IF_MISSING_CHOICES:
        raise ValueError(
            f'config.data.if_missing must be one of {IF_MISSING_CHOICES}, got {data.if_missing!r}.'
        )
    directory = dataset_dir(data)
    if is_built(directory):
        return directory
    if data.if_missing != 'synthetic':
        raise DatasetNotBuiltError(not_built_message(data))
    tree = synthetic.ensure_tree(
        data.dataset, data.raw_dir, workers=data.build_workers, **data.synthetic.to_dict()
    )
    return build_dataset(data, tree.sources, workers=data.build_workers)

