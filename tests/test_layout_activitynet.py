"""The ActivityNet layout: taxonomy leaves as classes, one example per annotated segment."""

import json
import os

import pytest

from r3d_jax import defaults
from r3d_jax.data.layouts import SourceError, activitynet

# Leaves (by id) in taxonomy order: 'Walking the dog', 'Archery', 'Long jump'.
TAXONOMY = [
    {'nodeId': 0, 'nodeName': 'Root', 'parentId': None, 'parentName': None},
    {'nodeId': 1, 'nodeName': 'Sports', 'parentId': 0, 'parentName': 'Root'},
    {'nodeId': 5, 'nodeName': 'Walking the dog', 'parentId': 0, 'parentName': 'Root'},
    {'nodeId': 3, 'nodeName': 'Archery', 'parentId': 1, 'parentName': 'Sports'},
    {'nodeId': 4, 'nodeName': 'Long jump', 'parentId': 1, 'parentName': 'Sports'},
]


def _video(subset, *segments):
    return {
        'subset': subset, 'duration': 30.0, 'resolution': '320x240', 'url': 'https://...',
        'annotations': [{'segment': list(segment), 'label': label} for label, segment in segments],
    }


DATABASE = {
    'aaa': _video('training', ('Archery', (1.5, 4.0)), ('Long jump', (6.0, 9.25))),
    'bbb': _video('validation', ('Walking the dog', (0.0, 12.0))),
    'ccc': _video('testing'),
    '-dd': _video('training', ('Walking the dog', (2.0, 3.0))),  # No file: missing.
}


def _tree(root, database=DATABASE, taxonomy=TAXONOMY):
    videos_dir = os.path.join(root, 'videos')
    os.makedirs(videos_dir)
    for name in ('v_aaa.mp4', 'v_bbb.mkv', 'v_ccc.mp4'):
        open(os.path.join(videos_dir, name), 'w').close()
    annotations = os.path.join(root, 'activity_net.v1-3.min.json')
    with open(annotations, 'w') as f:
        json.dump({'version': 'VERSION 1.3', 'taxonomy': taxonomy, 'database': database}, f)
    return {'videos_dir': videos_dir, 'annotations': annotations}


def _read(sources):
    data = defaults.get_config().data
    data.dataset = 'activitynet'
    return activitynet.read_contents(sources, data)


def test_classes_are_the_taxonomy_leaves_in_its_order_as_in_the_reference(tmp_path):
    contents = _read(_tree(str(tmp_path)))
    assert contents.class_names == ['Walking the dog', 'Archery', 'Long jump']


def test_each_annotated_segment_is_an_example_of_its_subset(tmp_path):
    sources = _tree(str(tmp_path))
    contents = _read(sources)
    assert list(contents.splits) == ['train', 'validation']
    train = contents.splits['train']
    assert [(e.video_id, e.label, e.segment) for e in train] == [
        ('v_aaa/0', 1, (1.5, 4.0)), ('v_aaa/1', 2, (6.0, 9.25)), ('v_-dd/0', 0, (2.0, 3.0))
    ]
    assert train[0].path == train[1].path == os.path.join(sources['videos_dir'], 'v_aaa.mp4')
    assert train[2].path == '' and train[2].missing.startswith('no file v_-dd.* under ')
    assert "database['aaa'].annotations[1]" in train[1].source
    (val,) = contents.splits['validation']
    assert val.path.endswith('v_bbb.mkv') and val.segment == (0.0, 12.0)


@pytest.mark.parametrize(
    ('video', 'message'),
    [
        (_video('training', ('Bowling', (1.0, 2.0))),
         r"database\['x'\]\.annotations\[0\]: label 'Bowling' is not a leaf of the taxonomy"),
        (_video('training', ('Sports', (1.0, 2.0))),
         r"annotations\[0\]: label 'Sports' is not a leaf"),
        (_video('training', ('Archery', (3.0, 2.0))),
         r"annotations\[0\]: segment must be \[start, end\] seconds, got \[3\.0, 2\.0\]"),
        ({'subset': 'training'}, r"database\['x'\]: missing \"annotations\""),
    ],
)
def test_bad_annotations_name_the_video_and_annotation(tmp_path, video, message):
    with pytest.raises(SourceError, match=message):
        _read(_tree(str(tmp_path), {**DATABASE, 'x': video}))


def test_a_file_that_is_not_json_names_its_line(tmp_path):
    sources = _tree(str(tmp_path))
    with open(sources['annotations'], 'w') as f:
        f.write('{\n"taxonomy": [,]\n}')
    with pytest.raises(SourceError, match=r'activity_net\.v1-3\.min\.json:2: not JSON'):
        _read(sources)
