"""UCF-101 as distributed: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and `ucfTrainTestlist/`.

The split files are `classInd.txt` ('1 ApplyEyeMakeup', 1-based, in label order),
`trainlist0N.txt` ('Class/v_x.avi 1') and `testlist0N.txt` ('Class/v_x.avi'). The class comes
from the listed folder, never from the file name: the folder `HandstandPushups` holds
`v_HandStandPushups_*.avi`, so file names are matched ignoring case. A listed video that does
not exist is an error naming the list file and line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

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

SPLIT_NUMBERS = (1, 2, 3)
CLASS_INDEX_FILE = 'classInd.txt'


def train_list_file(split_number: int) -> str:
    return f'trainlist0{split_number}.txt'


def test_list_file(split_number: int) -> str:
    return f'testlist0{split_number}.txt'


def split_number_of(data: ml_collections.ConfigDict) -> int:
    if data.split_number not in SPLIT_NUMBERS:
        raise ValueError(
            f'config.data.split_number (--split) must be one of {SPLIT_NUMBERS}, '
            f'got {data.split_number}.'
        )
    return data.split_number


def read_class_index(path: str) -> list[str]:
    """Class names in label order from classInd.txt ('1 ApplyEyeMakeup', 1-based, in order)."""
    names: list[str] = []
    for number, line in read_lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise SourceError(f'{path}:{number}: expected "<index> <ClassName>", got {line!r}.')
        if int(fields[0]) != len(names) + 1:
            raise SourceError(
                f'{path}:{number}: expected index {len(names) + 1} (indices are 1-based and '
                f'consecutive), got {fields[0]}.'
            )
        if fields[1] in names:
            raise SourceError(f'{path}:{number}: class {fields[1]!r} is listed twice.')
        names.append(fields[1])
    if not names:
        raise SourceError(f'{path}: no classes listed.')
    return names


def read_split_list(
    path: str, class_names: Sequence[str], *, labelled: bool
) -> list[tuple[str, str, int, str]]:
    """(relative path, class, label, source) of a trainlist (`labelled`) or testlist."""
    labels = {name: label for label, name in enumerate(class_names)}
    listed = []
    seen: dict[str, int] = {}
    expected = '"<Class>/<file>.avi <label>"' if labelled else '"<Class>/<file>.avi"'
    for number, line in read_lines(path):
        fields = line.split()
        parts = fields[0].split('/')
        if len(fields) != (2 if labelled else 1) or len(parts) != 2 or not all(parts):
            raise SourceError(f'{path}:{number}: expected {expected}, got {line!r}.')
        class_name = parts[0]
        if class_name not in labels:
            raise SourceError(
                f'{path}:{number}: unknown class {class_name!r} (not in {CLASS_INDEX_FILE}).'
            )
        if labelled and fields[1] != str(labels[class_name] + 1):
            raise SourceError(
                f'{path}:{number}: label {fields[1]} does not match class {class_name!r}, '
                f'which is {labels[class_name] + 1} in {CLASS_INDEX_FILE}.'
            )
        key = fields[0].lower()
        if key in seen:
            raise SourceError(
                f'{path}:{number}: {fields[0]} is already listed on line {seen[key]}.'
            )
        seen[key] = number
        listed.append((fields[0], class_name, labels[class_name], f'{path}:{number}'))
    if not listed:
        raise SourceError(f'{path}: no videos listed.')
    return listed


class _CaseInsensitiveTree:
    """Finds a name in a directory exactly, or else ignoring case; lists each directory once."""

    def __init__(self):
        self._listings: dict[str, list[str]] = {}

    def find(self, directory: str, name: str) -> str | None:
        if directory not in self._listings:
            self._listings[directory] = os.listdir(directory) if os.path.isdir(directory) else []
        entries = self._listings[directory]
        if name in entries:
            return name
        matches = [entry for entry in entries if entry.lower() == name.lower()]
        return matches[0] if len(matches) == 1 else None


def resolve_videos(
    listed: Sequence[tuple[str, str, int, str]], videos_dir: str, tree: _CaseInsensitiveTree
) -> list[VideoEntry]:
    """Each listed video's file; its id keeps the file name as spelled on disk."""
    entries = []
    for relative_path, class_name, label, source in listed:
        folder_name, file_name = relative_path.split('/')
        folder = tree.find(videos_dir, folder_name)
        if folder is None:
            raise SourceError(
                f'{source}: class folder {os.path.join(videos_dir, folder_name)} not found.'
            )
        found = tree.find(os.path.join(videos_dir, folder), file_name)
        if found is None:
            raise SourceError(
                f'{source}: video {os.path.join(videos_dir, folder, file_name)} not found '
                '(file names are matched ignoring case).'
            )
        entries.append(
            VideoEntry(
                video_id=f'{class_name}/{os.path.splitext(found)[0]}',
                class_name=class_name,
                label=label,
                path=os.path.join(videos_dir, folder, found),
                source=source,
            )
        )
    return entries


def read_contents(
    sources: Mapping[str, str], data: ml_collections.ConfigDict
) -> DatasetContents:
    """Parses and validates one official split and resolves all of its videos to files."""
    split_number = split_number_of(data)
    videos_dir = require_directory(sources['videos_dir'], 'videos directory')
    splits_dir = require_directory(sources['splits_dir'], 'split files directory')
    class_names = read_class_index(os.path.join(splits_dir, CLASS_INDEX_FILE))
    train = read_split_list(
        os.path.join(splits_dir, train_list_file(split_number)), class_names, labelled=True
    )
    test = read_split_list(
        os.path.join(splits_dir, test_list_file(split_number)), class_names, labelled=False
    )
    tree = _CaseInsensitiveTree()
    splits = {
        'train': resolve_videos(train, videos_dir, tree),
        'test': resolve_videos(test, videos_dir, tree),
    }
    check_disjoint(splits, key=lambda entry: entry.path.lower())
    return DatasetContents(class_names=class_names, splits=splits)


LAYOUT = Layout(
    name='ucf101',
    title='UCF-101',
    homepage='https://www.crcv.ucf.edu/data/UCF101.php',
    sources={
        'videos_dir': '<UCF-101/, a folder per class, from UCF101.rar>',
        'splits_dir': '<ucfTrainTestlist/, from UCF101TrainTestSplits-RecognitionTask.zip>',
    },
    optional_sources=(),
    config_fields=('split_number',),
    splits=('train', 'test'),
    skips_missing_videos=False,
    max_skip_fraction=0.0,
    identity=lambda data: f'split{split_number_of(data)}',
    read_contents=read_contents,
)
