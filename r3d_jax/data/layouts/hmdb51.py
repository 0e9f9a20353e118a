"""HMDB-51 as distributed: `<class>/<video>.avi` and `testTrainMulti_7030_splits/`.

`hmdb51_org.rar` unpacks to one `.rar` per class, each to a folder `<class>/` of AVI files;
`test_train_splits.rar` to `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`, each line
`<video file name> <id>` with id 1 (train), 2 (test) or 0 (not used in that split). The class is
the split file's name without `_test_split<N>.txt`; classes sorted by name give the labels, as
in the reference. Real files hold 70 train and 30 test videos per class and split; nothing here
counts on it, but every class must have both. File names hold brackets, `&`, `;` and `'`, and
lines may end in spaces, so names are taken literally (no glob, no shell). A listed video that
does not exist is an error naming the split file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import ml_collections

from r3d_jax.data.layouts.common import (
    DatasetContents,
    Layout,
    SourceError,
    VideoEntry,
    check_disjoint,
    read_lines,
    require_directory,
)
from r3d_jax.data.layouts.ucf101 import split_number_of

SPLIT_FILE = re.compile(r'(?P<class_name>.+)_test_split(?P<number>\d+)\.txt')
SPLIT_IDS = {'1': 'train', '2': 'test', '0': ''}  # '' : listed but not used in this split.


def split_file_name(class_name: str, split_number: int) -> str:
    return f'{class_name}_test_split{split_number}.txt'


def class_names_of(splits_dir: str, split_number: int) -> list[str]:
    """The classes that have a split file for `split_number`, sorted (the labels' order).

    Every class with a split file for another split must have one for this split too.
    """
    by_split: dict[int, set[str]] = {}
    for name in os.listdir(splits_dir):
        match = SPLIT_FILE.fullmatch(name)
        if match:
            by_split.setdefault(int(match['number']), set()).add(match['class_name'])
    classes = by_split.get(split_number, set())
    if not classes:
        raise SourceError(
            f'{splits_dir}: no <class>_test_split{split_number}.txt files (expected the split '
            'files of testTrainMulti_7030_splits/, one per class and split).'
        )
    for number, others in sorted(by_split.items()):
        lacking = sorted(others - classes)
        if lacking:
            raise SourceError(
                f'{splits_dir}: {", ".join(split_file_name(c, split_number) for c in lacking)} '
                f'not found, though split {number} lists these classes.'
            )
    return sorted(classes)


def read_split_file(
    path: str, class_name: str, label: int, videos_dir: str
) -> dict[str, list[VideoEntry]]:
    """The train and test videos one class's split file lists, resolved to files."""
    folder = os.path.join(videos_dir, class_name)
    if not os.path.isdir(folder):
        raise SourceError(f'{path}: the class folder {folder} does not exist.')
    chosen: dict[str, list[VideoEntry]] = {'train': [], 'test': []}
    seen: dict[str, int] = {}
    for number, line in read_lines(path):
        fields = line.rsplit(None, 1)
        if len(fields) != 2 or fields[1] not in SPLIT_IDS:
            raise SourceError(
                f'{path}:{number}: expected "<video file name> <id>" with id 1 (train), '
                f'2 (test) or 0 (unused), got {line!r}.'
            )
        file_name, split = fields[0], SPLIT_IDS[fields[1]]
        if file_name in seen:
            raise SourceError(f'{path}:{number}: {file_name} is already listed on line '
                              f'{seen[file_name]}.')
        seen[file_name] = number
        if not split:
            continue
        video = os.path.join(folder, file_name)
        if not os.path.isfile(video):
            raise SourceError(f'{path}:{number}: video {video} not found.')
        chosen[split].append(
            VideoEntry(
                video_id=f'{class_name}/{os.path.splitext(file_name)[0]}',
                class_name=class_name,
                label=label,
                path=video,
                source=f'{path}:{number}',
            )
        )
    for split, code in (('train', 1), ('test', 2)):
        if not chosen[split]:
            raise SourceError(f'{path}: no {split} video (id {code}) listed.')
    return chosen


def read_contents(
    sources: Mapping[str, str], data: ml_collections.ConfigDict
) -> DatasetContents:
    """Reads one split's 51 split files (in class order) and resolves every video."""
    split_number = split_number_of(data)
    videos_dir = require_directory(sources['videos_dir'], 'videos directory')
    splits_dir = require_directory(sources['splits_dir'], 'split files directory')
    class_names = class_names_of(splits_dir, split_number)
    splits: dict[str, list[VideoEntry]] = {'train': [], 'test': []}
    for label, class_name in enumerate(class_names):
        path = os.path.join(splits_dir, split_file_name(class_name, split_number))
        for split, entries in read_split_file(path, class_name, label, videos_dir).items():
            splits[split].extend(entries)
    check_disjoint(splits, key=lambda entry: entry.path)
    return DatasetContents(class_names=class_names, splits=splits)


LAYOUT = Layout(
    name='hmdb51',
    title='HMDB-51',
    homepage='https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/',
    sources={
        'videos_dir': '<folder of the 51 class folders unpacked from hmdb51_org.rar>',
        'splits_dir': '<testTrainMulti_7030_splits/, from test_train_splits.rar>',
    },
    optional_sources=(),
    config_fields=('split_number',),
    splits=('train', 'test'),
    skips_missing_videos=False,
    max_skip_fraction=0.0,
    identity=lambda data: f'split{split_number_of(data)}',
    read_contents=read_contents,
)
