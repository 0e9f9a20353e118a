"""A user's own videos: list files, or class folders split at random with a fixed seed.

With `--splits_dir`, that folder holds `train.txt` and `test.txt` (and optionally `val.txt`),
one `<relative path> <label>` per line, paths relative to `--videos_dir` (they may contain
spaces: the label is split off the right), and optionally `classes.txt`, one class name per line
in label order. A label is a class name, or with `classes.txt` also a 0-based index into it.
Without `classes.txt` the classes are the training labels, sorted. Without `--splits_dir`,
`--videos_dir` holds either split folders of class folders (`train/<class>/<video>`,
`test/<class>/...`, optionally `val/<class>/...`), or a folder per class (`<class>/<video>`), of
which `config.data.video_list_test_fraction` of each class's videos, drawn with
`config.data.video_list_seed`, form the test split. Videos in folders are found by extension
(any container and codec FFmpeg reads).

The dataset's name on disk is `config.data.video_list_name` (`--video_list_name`): a dataset
built under one name is found again under it, so give other videos another name.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping

import ml_collections

from r3d_jax.data.layouts.common import (
    DatasetContents,
    Layout,
    SourceError,
    VideoEntry,
    check_disjoint,
    is_video_file,
    read_lines,
    require_directory,
)

LIST_FILES = {'train': 'train.txt', 'test': 'test.txt', 'val': 'val.txt'}
SPLIT_FOLDERS = ('train', 'test', 'val')
OPTIONAL_SPLITS = ('val',)
CLASSES_FILE = 'classes.txt'
NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]*')


def identity(data: ml_collections.ConfigDict) -> str:
    if not NAME.fullmatch(data.video_list_name):
        raise ValueError(
            'config.data.video_list_name (--video_list_name) names your dataset on disk: '
            'letters, digits, "_" and "-", starting with a letter or digit; got '
            f'{data.video_list_name!r}.'
        )
    return data.video_list_name


def _video_id(relative_path: str) -> str:
    return os.path.splitext(relative_path.replace(os.sep, '/'))[0]


def read_classes_file(path: str) -> list[str]:
    names: list[str] = []
    for number, name in read_lines(path):
        if name in names:
            raise SourceError(f'{path}:{number}: class {name!r} is listed twice.')
        names.append(name)
    if not names:
        raise SourceError(f'{path}: no classes listed.')
    return names


def _read_list(path: str, videos_dir: str) -> list[tuple[str, str, str]]:
    """(relative path, label as written, source) of each line of one list file."""
    listed = []
    for number, line in read_lines(path):
        fields = line.rsplit(None, 1)
        source = f'{path}:{number}'
        if len(fields) != 2:
            raise SourceError(f'{source}: expected "<relative path> <label>", got {line!r}.')
        relative_path, label = fields
        if os.path.isabs(relative_path):
            raise SourceError(f'{source}: {relative_path} must be relative to {videos_dir}.')
        if not os.path.isfile(os.path.join(videos_dir, relative_path)):
            raise SourceError(
                f'{source}: video {os.path.join(videos_dir, relative_path)} not found.'
            )
        listed.append((relative_path, label, source))
    if not listed:
        raise SourceError(f'{path}: no videos listed.')
    return listed


def _label_of(label: str, class_names: list[str], source: str, classes_path: str | None) -> int:
    if label in class_names:
        return class_names.index(label)
    if classes_path is None:
        if label.isdigit():
            raise SourceError(
                f'{source}: integer label {label} needs {CLASSES_FILE} beside the lists to say '
                'which class it is (or write the class name).'
            )
        raise SourceError(f'{source}: class {label!r} has no training video.')
    if label.isdigit():
        if int(label) < len(class_names):
            return int(label)
        raise SourceError(
            f'{source}: label {label} is out of range: {classes_path} lists '
            f'{len(class_names)} classes (labels 0-{len(class_names) - 1}).'
        )
    raise SourceError(f'{source}: class {label!r} is not in {classes_path}.')


def read_lists(videos_dir: str, splits_dir: str) -> DatasetContents:
    """The splits `train.txt`, `test.txt` and, if present, `val.txt` list."""
    listed = {
        split: _read_list(os.path.join(splits_dir, name), videos_dir)
        for split, name in LIST_FILES.items()
        if split not in OPTIONAL_SPLITS or os.path.exists(os.path.join(splits_dir, name))
    }
    classes_path = os.path.join(splits_dir, CLASSES_FILE)
    if os.path.exists(classes_path):
        class_names = read_classes_file(classes_path)
    else:
        classes_path = None
        class_names = sorted({label for _, label, _ in listed['train'] if not label.isdigit()})
    splits = {
        split: [
            VideoEntry(
                video_id=_video_id(relative_path),
                class_name=class_names[index],
                label=index,
                path=os.path.join(videos_dir, relative_path),
                source=source,
            )
            for relative_path, label, source in lines
            for index in [_label_of(label, class_names, source, classes_path)]
        ]
        for split, lines in listed.items()
    }
    check_disjoint(splits, key=lambda entry: os.path.normpath(entry.path))
    return DatasetContents(class_names=class_names, splits=splits)


def _check_test_fraction(fraction: float) -> float:
    if not 0 < fraction < 1:
        raise ValueError(
            'config.data.video_list_test_fraction (--video_list_test_fraction) must lie '
            f'strictly between 0 and 1, got {fraction}.'
        )
    return fraction


def _subfolders(directory: str) -> list[str]:
    names = sorted(name for name in os.listdir(directory) if not name.startswith('.'))
    loose = [name for name in names if is_video_file(name)]
    if loose:
        raise SourceError(
            f'{os.path.join(directory, loose[0])}: videos must sit in class folders '
            f'({directory}/<class>/<video>), or be listed in {LIST_FILES["train"]} and '
            f'{LIST_FILES["test"]} in --splits_dir.'
        )
    folders = [name for name in names if os.path.isdir(os.path.join(directory, name))]
    if not folders:
        raise SourceError(f'{directory}: no class folders (<class>/<video> files).')
    return folders


def _videos_in(folder: str, at_least: int = 1) -> list[str]:
    files = sorted(name for name in os.listdir(folder) if is_video_file(name))
    if len(files) < at_least:
        needs = 'two to be split into train and test' if at_least > 1 else 'one'
        raise SourceError(
            f'{folder}: {len(files)} video file(s); a class needs at least {needs} (video files '
            'are found by extension, e.g. .mp4, .avi).'
        )
    return files


def _folder_entry(folder: str, class_name: str, label: int, name: str) -> VideoEntry:
    path = os.path.join(folder, name)
    return VideoEntry(
        video_id=f'{class_name}/{os.path.splitext(name)[0]}',
        class_name=class_name,
        label=label,
        path=path,
        source=path,
    )


def read_split_folders(videos_dir: str) -> DatasetContents:
    """`train/<class>/`, `test/<class>/` (and `val/<class>/`): classes are train's, sorted."""
    class_names = _subfolders(os.path.join(videos_dir, 'train'))
    labels = {name: label for label, name in enumerate(class_names)}
    splits: dict[str, list[VideoEntry]] = {}
    for split in SPLIT_FOLDERS:
        split_dir = os.path.join(videos_dir, split)
        if not os.path.isdir(split_dir):
            continue
        entries = []
        for class_name in _subfolders(split_dir):
            folder = os.path.join(split_dir, class_name)
            if class_name not in labels:
                raise SourceError(f'{folder}: class {class_name!r} has no training folder.')
            entries += [_folder_entry(folder, class_name, labels[class_name], name)
                        for name in _videos_in(folder)]
        splits[split] = entries
    return DatasetContents(class_names=class_names, splits=splits)


def read_class_folders(videos_dir: str, test_fraction: float, seed: int) -> DatasetContents:
    """Classes from the folder names (sorted); each class's test videos drawn with `seed`."""
    _check_test_fraction(test_fraction)
    class_names = _subfolders(videos_dir)
    splits: dict[str, list[VideoEntry]] = {'train': [], 'test': []}
    for label, class_name in enumerate(class_names):
        folder = os.path.join(videos_dir, class_name)
        files = _videos_in(folder, at_least=2)
        num_test = min(len(files) - 1, max(1, round(len(files) * test_fraction)))
        held_out = set(random.Random(f'{seed}:{class_name}').sample(range(len(files)), num_test))
        for index, name in enumerate(files):
            splits['test' if index in held_out else 'train'].append(
                _folder_entry(folder, class_name, label, name)
            )
    return DatasetContents(class_names=class_names, splits=splits)


def _has_split_folders(videos_dir: str) -> bool:
    folders = {n for n in os.listdir(videos_dir) if os.path.isdir(os.path.join(videos_dir, n))}
    return {'train', 'test'} <= folders <= set(SPLIT_FOLDERS)


def read_contents(
    sources: Mapping[str, str], data: ml_collections.ConfigDict
) -> DatasetContents:
    identity(data)
    videos_dir = require_directory(sources['videos_dir'], 'videos directory')
    if sources.get('splits_dir'):
        splits_dir = require_directory(sources['splits_dir'], 'list files directory')
        return read_lists(videos_dir, splits_dir)
    if _has_split_folders(videos_dir):
        return read_split_folders(videos_dir)
    return read_class_folders(videos_dir, data.video_list_test_fraction, data.video_list_seed)


LAYOUT = Layout(
    name='video_list',
    title='video list',
    homepage='',
    sources={
        'videos_dir': '<folder of your videos>',
        'splits_dir': '<folder holding train.txt, test.txt [, val.txt, classes.txt]>',
    },
    optional_sources=('splits_dir',),
    config_fields=('video_list_name', 'video_list_test_fraction', 'video_list_seed'),
    splits=('train', 'test', 'val'),
    skips_missing_videos=False,
    max_skip_fraction=0.0,
    identity=identity,
    read_contents=read_contents,
)
