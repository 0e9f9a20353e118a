"""The synthetic list-file dataset: class folders, list files, mixed sizes and frame rates."""

import os
from fractions import Fraction

import av
import pytest

from r3d_jax.data import synthetic
from r3d_jax.data.synthetic import video_list

CLASSES = ['MoveUp', 'HandstandPushups']
TINY = {'num_classes': 2, 'num_groups': 4, 'clips_per_group': 2, 'min_frames': 3,
        'max_frames': 5}


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return synthetic.generate(
        'video_list', str(tmp_path_factory.mktemp('synthetic') / 'list'), workers=2, **TINY
    )


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def _entries(tree, split):
    """(relative path, label as written) of a list file; a path may hold spaces."""
    return [
        tuple(line.rsplit(' ', 1))
        for line in _lines(os.path.join(tree.sources['splits_dir'], f'{split}.txt'))
    ]


def _videos(root):
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
        if name.endswith('.mp4')
    )


def test_tree_has_class_folders_and_list_files_beside_them(tree):
    videos_dir = os.path.join(tree.root, 'videos')
    assert tree.sources == {'videos_dir': videos_dir, 'splits_dir': videos_dir}
    assert sorted(os.listdir(videos_dir)) == sorted(
        [*CLASSES, 'classes.txt', 'train.txt', 'test.txt']
    )
    assert _lines(os.path.join(videos_dir, 'classes.txt')) == CLASSES
    train, test = _entries(tree, 'train'), _entries(tree, 'test')
    assert sorted(path for path, _ in train + test) == _videos(videos_dir)
    assert len(test) == 2 * 2  # Group 1 of each class: round(4 * 7 / 25) = 1 group of 2 clips.
    for path, label in train + test:
        assert label in (path.split('/')[0], str(CLASSES.index(path.split('/')[0])))
    written = [label for _, label in train + test]
    assert any(label.isdigit() for label in written)
    assert any(label in CLASSES for label in written)
    assert 'MoveUp/MoveUp take 1 (copy).mp4' in [path for path, _ in test]


def test_videos_are_h264_mp4_of_mixed_sizes_and_frame_rates(tree):
    formats, lengths = set(), []
    for relative in _videos(tree.sources['videos_dir']):
        with av.open(os.path.join(tree.sources['videos_dir'], relative)) as container:
            assert container.format.name.split(',')[0] == 'mov'  # PyAV's name for MP4.
            stream = container.streams.video[0]
            assert stream.codec_context.name == 'h264'
            formats.add((stream.width, stream.height, stream.average_rate))
            lengths.append(sum(1 for _ in container.decode(stream)))
    assert formats == set(video_list.FORMATS)
    assert (180, 320, 30) in formats  # Portrait.
    assert {fps for _, _, fps in formats} == {24, 25, 30, Fraction(30000, 1001)}
    assert TINY['min_frames'] <= min(lengths) < max(lengths) <= TINY['max_frames']


def test_with_val_adds_a_validation_list_of_other_groups(tmp_path):
    tree = synthetic.generate(
        'video_list', str(tmp_path / 'list'), workers=1, variant='with_val',
        **{**TINY, 'clips_per_group': 1, 'max_frames': 3},
    )
    val, test = _entries(tree, 'val'), _entries(tree, 'test')
    train = _entries(tree, 'train')
    assert len(val) == len(test) == 2 and len(train) == 4
    assert not {p for p, _ in val} & {p for p, _ in test}
    assert all('_g02_' in path for path, _ in val)  # Split 2's block of groups.


def test_split_folders_hold_split_and_class_without_lists(tmp_path):
    tree = synthetic.generate(
        'video_list', str(tmp_path / 'list'), workers=1, variant='split_folders',
        **{**TINY, 'clips_per_group': 1, 'max_frames': 3},
    )
    assert tree.sources == {'videos_dir': os.path.join(tree.root, 'videos')}
    assert sorted(os.listdir(tree.sources['videos_dir'])) == ['test', 'train']
    videos = _videos(tree.sources['videos_dir'])
    assert len(videos) == 8
    assert {tuple(path.split('/')[:2]) for path in videos} == {
        (split, name) for split in ('train', 'test') for name in CLASSES
    }
