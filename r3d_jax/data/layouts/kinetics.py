"""Kinetics-400/600/700 from the annotation CSVs and the clips a user has downloaded.

The CSVs (`--train_csv`, `--val_csv`; their names differ between sources: `train.csv`,
`kinetics_train.csv`, `kinetics-600_val.csv`...) have the header
`label,youtube_id,time_start,time_end,split` (+ `,is_cc` in some releases), times in whole
seconds. A clip is the file `<youtube_id>_<start:06d>_<end:06d>.<ext>` (mp4, sometimes webm or
mkv) anywhere under `--videos_dir`: in per-label folders (some downloaders write the label's
spaces as `_`) or in one flat folder. The tree is indexed once and clips are matched by file
stem. YouTube ids may start with `-`; nothing here parses them as options.

Copies of Kinetics always lack some clips (videos removed from YouTube), so a listed clip
without a file is skipped and recorded, not an error. The labels are the sorted set of the
training CSV's labels (the validation labels must be among them); the splits are `train` and
`validation` (the test CSV has no labels).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping

import ml_collections

from r3d_jax.data.layouts.common import (
    DatasetContents,
    Layout,
    SourceError,
    VideoEntry,
    check_disjoint,
    index_videos,
    require_directory,
)

VERSIONS = (400, 600, 700)
COLUMNS = ('label', 'youtube_id', 'time_start', 'time_end', 'split')
OPTIONAL_COLUMNS = ('is_cc',)


def version_of(data: ml_collections.ConfigDict) -> int:
    if data.kinetics_version not in VERSIONS:
        raise ValueError(
            f'config.data.kinetics_version (--kinetics_version) must be one of {VERSIONS}, '
            f'got {data.kinetics_version}.'
        )
    return data.kinetics_version


def clip_stem(youtube_id: str, time_start: int, time_end: int) -> str:
    """The file name of a clip without its extension, as the Kinetics downloaders write it."""
    return f'{youtube_id}_{time_start:06d}_{time_end:06d}'


def read_csv(path: str) -> list[tuple[str, str, str]]:
    """(label, clip stem, source) of each row, with the header and every time checked."""
    if not os.path.isfile(path):
        raise SourceError(f'{path}: file not found.')
    rows = []
    seen: dict[str, int] = {}
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = tuple(field.strip() for field in next(reader, ()))
        if header not in (COLUMNS, COLUMNS + OPTIONAL_COLUMNS):
            raise SourceError(
                f'{path}:1: expected the header "{",".join(COLUMNS)}" (optionally followed by '
                f'",{",".join(OPTIONAL_COLUMNS)}"), got {",".join(header)!r}.'
            )
        for row in reader:
            number = reader.line_num
            if not any(field.strip() for field in row):
                continue
            source = f'{path}:{number}'
            if len(row) != len(header):
                raise SourceError(f'{source}: expected {len(header)} fields, got {len(row)}.')
            label, youtube_id, start, end = (field.strip() for field in row[:4])
            for column, value in (('time_start', start), ('time_end', end)):
                if not value.isdigit():
                    raise SourceError(
                        f'{source}: {column} must be a whole number of seconds, got {value!r}.'
                    )
            if not label or not youtube_id:
                raise SourceError(f'{source}: empty label or youtube_id.')
            stem = clip_stem(youtube_id, int(start), int(end))
            if stem in seen:
                raise SourceError(f'{source}: clip {stem} is already listed on line {seen[stem]}.')
            seen[stem] = number
            rows.append((label, stem, source))
    if not rows:
        raise SourceError(f'{path}: no clips listed.')
    return rows


def find_clip(index: Mapping[str, list[str]], stem: str, label: str) -> str:
    """The clip's file: the one in its label's folder if there are several, else the first."""
    paths = index.get(stem, [])
    folders = {label, label.replace(' ', '_')}
    in_label_folder = [path for path in paths if os.path.basename(os.path.dirname(path)) in folders]
    return (in_label_folder or paths or [''])[0]


def read_contents(
    sources: Mapping[str, str], data: ml_collections.ConfigDict
) -> DatasetContents:
    version_of(data)
    videos_dir = require_directory(sources['videos_dir'], 'videos directory')
    listed = {'train': read_csv(sources['train_csv']), 'validation': read_csv(sources['val_csv'])}
    class_names = sorted({label for label, _, _ in listed['train']})
    labels = {name: label for label, name in enumerate(class_names)}
    for label, _, source in listed['validation']:
        if label not in labels:
            raise SourceError(
                f'{source}: label {label!r} is not among the {len(class_names)} labels of '
                f'{sources["train_csv"]}.'
            )
    index = index_videos(videos_dir)
    splits = {}
    for split, rows in listed.items():
        entries = []
        for label, stem, source in rows:
            path = find_clip(index, stem, label)
            entries.append(
                VideoEntry(
                    video_id=stem,
                    class_name=label,
                    label=labels[label],
                    path=path,
                    source=source,
                    missing='' if path else f'no file {stem}.* under {videos_dir}',
                )
            )
        splits[split] = entries
    check_disjoint(splits, key=lambda entry: entry.video_id)
    return DatasetContents(class_names=class_names, splits=splits)


LAYOUT = Layout(
    name='kinetics',
    title='Kinetics',
    homepage='https://github.com/cvdfoundation/kinetics-dataset',
    sources={
        'videos_dir': '<folder of the downloaded clips, flat or a folder per label>',
        'train_csv': '<training annotations, e.g. annotations/train.csv>',
        'val_csv': '<validation annotations, e.g. annotations/val.csv>',
    },
    optional_sources=(),
    config_fields=('kinetics_version',),
    splits=('train', 'validation'),
    skips_missing_videos=True,
    max_skip_fraction=0.2,
    identity=lambda data: f'k{version_of(data)}',
    read_contents=read_contents,
)
