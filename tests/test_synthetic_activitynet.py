"""The synthetic ActivityNet: the annotation JSON, its taxonomy, and segments that the videos
show (motion inside the annotated segments, stillness around them)."""

import json
import math
import os
import re

import av
import numpy as np
import pytest

from r3d_jax.data import synthetic
from r3d_jax.data.synthetic import activitynet

TINY = {'num_classes': 3, 'num_groups': 4, 'clips_per_group': 2, 'min_frames': 6,
        'max_frames': 10, 'missing_fraction': 0.1}
CLASSES = ['Move up', 'Handstand pushups', 'Move sideways']


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return synthetic.generate(
        'activitynet', str(tmp_path_factory.mktemp('synthetic') / 'anet'), workers=2, **TINY
    )


@pytest.fixture(scope='module')
def annotations(tree):
    with open(tree.sources['annotations']) as f:
        return json.load(f)


def _decode(path):
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(stream)])
        return frames, stream.average_rate, (stream.width, stream.height)


def test_annotations_have_activitynets_fields(tree, annotations):
    assert tree.sources == {
        'videos_dir': os.path.join(tree.root, 'videos'),
        'annotations': os.path.join(tree.root, 'activity_net.v1-3.min.json'),
    }
    assert annotations['version'] == 'VERSION 1.3'
    database = annotations['database']
    assert len(database) == 3 * 4 + activitynet.TESTING_VIDEOS
    subsets = [video['subset'] for video in database.values()]
    # Per class: 4 videos, group 1 (round(4 * 7 / 25) = 1) for validation.
    assert (subsets.count('training'), subsets.count('validation')) == (9, 3)
    assert subsets.count('testing') == activitynet.TESTING_VIDEOS
    for video_id, video in database.items():
        assert re.fullmatch(r'[A-Za-z0-9_-]{11}', video_id)
        assert set(video) == {'subset', 'duration', 'resolution', 'url', 'annotations'}
        assert video['url'] == f'https://www.youtube.com/watch?v={video_id}'
        assert re.fullmatch(r'\d+x\d+', video['resolution'])
        if video['subset'] == 'testing':
            assert video['annotations'] == []
            continue
        assert len(video['annotations']) == TINY['clips_per_group']
        labels = {a['label'] for a in video['annotations']}
        assert len(labels) == 1 and labels <= set(CLASSES)
        ends = [t for a in video['annotations'] for t in a['segment']]
        assert ends[0] > 0 and ends == sorted(ends) and ends[-1] < video['duration']


def test_taxonomy_leaves_are_the_classes(annotations):
    nodes = annotations['taxonomy']
    assert all(set(n) == {'nodeId', 'nodeName', 'parentId', 'parentName'} for n in nodes)
    by_id = {n['nodeId']: n for n in nodes}
    root = [n for n in nodes if n['parentId'] is None]
    assert len(root) == 1 and root[0]['parentName'] is None
    for node in nodes:
        if node['parentId'] is not None:
            assert by_id[node['parentId']]['nodeName'] == node['parentName']
    parents = {n['parentId'] for n in nodes}
    assert sorted(n['nodeName'] for n in nodes if n['nodeId'] not in parents) == sorted(CLASSES)


def test_some_listed_videos_are_missing_and_one_is_corrupt(tree, annotations):
    files = sorted(os.listdir(tree.sources['videos_dir']))
    listed = {f'v_{video_id}.mp4' for video_id in annotations['database']}
    assert set(files) <= listed
    assert len(listed) - len(files) == math.ceil(0.1 * len(listed)) == 2
    unreadable = []
    for name in files:
        try:
            _decode(os.path.join(tree.sources['videos_dir'], name))
        except av.error.InvalidDataError:
            unreadable.append(name)
    assert len(unreadable) == 1


def test_videos_move_inside_annotated_segments_and_stand_still_between(tree, annotations):
    formats = set()
    checked = 0
    for video_id, video in annotations['database'].items():
        path = os.path.join(tree.sources['videos_dir'], f'v_{video_id}.mp4')
        if video['subset'] == 'testing' or not os.path.exists(path):
            continue
        try:
            frames, fps, size = _decode(path)
        except av.error.InvalidDataError:
            continue
        formats.add((*size, fps))
        assert f'{size[0]}x{size[1]}' == video['resolution']
        assert video['duration'] == round(float(len(frames) / fps), 2)
        # Frame i lies in a segment when start <= i / fps < end (times are frame boundaries).
        inside = np.zeros(len(frames), bool)
        for annotation in video['annotations']:
            start, end = (round(t * float(fps)) for t in annotation['segment'])
            assert start > 0 and end > start + 1
            inside[start:end] = True
        change = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
        both_inside = inside[1:] & inside[:-1]
        both_outside = ~inside[1:] & ~inside[:-1]
        assert both_inside.any() and both_outside.any()
        assert change[both_inside].min() > 3 * change[both_outside].max() + 0.5, change
        checked += 1
    assert checked >= 6
    assert formats == set(activitynet.FORMATS)
