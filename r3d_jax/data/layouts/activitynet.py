"""ActivityNet v1.3: `activity_net.v1-3.min.json` and the videos `v_<id>.<ext>`.

The annotation file holds `taxonomy` (nodes `{nodeId, nodeName, parentId, parentName}`) and
`database[id] = {subset, duration, resolution, url, annotations: [{segment: [start_s, end_s],
label}]}`, ids without the `v_` of the file names. As in the reference
(`datasets/activitynet.py`), the classes are the taxonomy's leaves (nodes no node names as its
parent, by id) in the order the taxonomy lists them, and every annotated segment is one
example holding only its frames (`video_decoding.segment_frames`: the reference's
[ceil(start * fps), ceil(end * fps)) in its 1-based frame numbers) at the video's frame rate.
The `training` subset is the `train` split and `validation` the `validation` split; `testing`
has no labels. Videos are found by stem anywhere under `--videos_dir`; many are gone from
YouTube, so a missing one is skipped and recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from r3d_jax.data.layouts.common import (
    DatasetContents,
    Layout,
    SourceError,
    VideoEntry,
    index_videos,
    require_directory,
)

SUBSETS = {'training': 'train', 'validation': 'validation'}


def _field(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise SourceError(f'{where}: missing "{key}".')
    return mapping[key]


def leaf_classes(taxonomy: list[dict[str, Any]], path: str) -> list[str]:
    """Names of the taxonomy's leaves in taxonomy order (the reference's labels)."""
    parents = {_field(node, 'parentId', f'{path}: taxonomy[{i}]') for i, node in
               enumerate(taxonomy)}
    names = [
        _field(node, 'nodeName', f'{path}: taxonomy[{i}]')
        for i, node in enumerate(taxonomy)
        if _field(node, 'nodeId', f'{path}: taxonomy[{i}]') not in parents
    ]
    if not names:
        raise SourceError(f'{path}: the taxonomy has no leaves.')
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise SourceError(f'{path}: taxonomy leaves named twice: {twice}.')
    return names


def read_annotations(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise SourceError(f'{path}: file not found.')
    try:
        with open(path, encoding='utf-8') as f:
            annotations = json.load(f)
    except json.JSONDecodeError as error:
        raise SourceError(f'{path}:{error.lineno}: not JSON: {error.msg}.') from error
    _field(annotations, 'taxonomy', path)
    _field(annotations, 'database', path)
    return annotations


def _segment(annotation: Any, where: str) -> tuple[float, float]:
    segment = _field(annotation, 'segment', where)
    if (
        not isinstance(segment, list)
        or len(segment) != 2
        or not all(isinstance(t, int | float) and t >= 0 for t in segment)
        or segment[0] > segment[1]
    ):
        raise SourceError(f'{where}: segment must be [start, end] seconds, got {segment!r}.')
    return float(segment[0]), float(segment[1])


def read_contents(
    sources: Mapping[str, str], data: ml_collections.ConfigDict
) -> DatasetContents:
    del data  # One release, no options.
    path = sources['annotations']
    videos_dir = require_directory(sources['videos_dir'], 'videos directory')
    annotations = read_annotations(path)
    class_names = leaf_classes(annotations['taxonomy'], path)
    labels = {name: label for label, name in enumerate(class_names)}
    index = index_videos(videos_dir)
    splits: dict[str, list[VideoEntry]] = {split: [] for split in SUBSETS.values()}
    for video_id, video in annotations['database'].items():
        where = f'{path}: database[{video_id!r}]'
        split = SUBSETS.get(_field(video, 'subset', where))
        if split is None:
            continue
        stem = f'v_{video_id}'
        found = index.get(stem, [''])[0]
        for k, annotation in enumerate(_field(video, 'annotations', where)):
            at = f'{where}.annotations[{k}]'
            label = _field(annotation, 'label', at)
            if label not in labels:
                raise SourceError(f'{at}: label {label!r} is not a leaf of the taxonomy.')
            splits[split].append(
                VideoEntry(
                    video_id=f'{stem}/{k}',
                    class_name=label,
                    label=labels[label],
                    path=found,
                    source=at,
                    segment=_segment(annotation, at),
                    missing='' if found else f'no file {stem}.* under {videos_dir}',
                )
            )
    for split, entries in splits.items():
        if not entries:
            subset = next(s for s, name in SUBSETS.items() if name == split)
            raise SourceError(f'{path}: no annotated video in the {subset!r} subset.')
    return DatasetContents(class_names=class_names, splits=splits)


LAYOUT = Layout(
    name='activitynet',
    title='ActivityNet v1.3',
    homepage='http://activity-net.org/download.html',
    sources={
        'videos_dir': '<folder of the v_<id>.mp4 videos>',
        'annotations': '<activity_net.v1-3.min.json>',
    },
    optional_sources=(),
    config_fields=(),
    splits=('train', 'validation'),
    skips_missing_videos=True,
    max_skip_fraction=0.2,
    identity=lambda data: 'v1_3',
    read_contents=read_contents,
)
