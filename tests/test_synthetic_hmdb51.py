"""The synthetic HMDB-51: its folders, file names, split files and DivX AVI videos."""

import os
import re

import av
import pytest

from r3d_jax.data import synthetic
from r3d_jax.data.synthetic import hmdb51

NUM_CLASSES, NUM_GROUPS, CLIPS_PER_GROUP = 3, 7, 1
MIN_FRAMES, MAX_FRAMES = 4, 9


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return synthetic.generate(
        'hmdb51',
        str(tmp_path_factory.mktemp('synthetic') / 'hmdb'),
        num_classes=NUM_CLASSES,
        num_groups=NUM_GROUPS,
        clips_per_group=CLIPS_PER_GROUP,
        min_frames=MIN_FRAMES,
        max_frames=MAX_FRAMES,
        workers=2,
    )


def _split_lines(tree, class_name, split):
    path = os.path.join(tree.sources['splits_dir'], f'{class_name}_test_split{split}.txt')
    with open(path, newline='') as f:
        return f.read().split('\n')


def test_tree_has_hmdb51_folders_and_split_files(tree):
    assert tree.sources == {
        'videos_dir': os.path.join(tree.root, 'hmdb51_org'),
        'splits_dir': os.path.join(tree.root, 'testTrainMulti_7030_splits'),
    }
    classes = ['move_up', 'handstand_pushups', 'move_sideways']
    assert sorted(os.listdir(tree.sources['videos_dir'])) == sorted(classes)
    assert sorted(os.listdir(tree.sources['splits_dir'])) == sorted(
        f'{name}_test_split{n}.txt' for name in classes for n in (1, 2, 3)
    )
    for name in classes:
        files = sorted(os.listdir(os.path.join(tree.sources['videos_dir'], name)))
        assert len(files) == NUM_GROUPS * CLIPS_PER_GROUP
        for split in (1, 2, 3):
            lines = _split_lines(tree, name, split)
            assert lines[-1] == ''  # Every line ends with a newline.
            assert [line.split(' ')[0] for line in lines[:-1]] == files
            assert all(re.fullmatch(r'\S+\.avi [012] ?', line) for line in lines[:-1])


def test_file_names_are_odd_like_hmdb51s(tree):
    names = [
        name
        for folder in os.listdir(tree.sources['videos_dir'])
        for name in os.listdir(os.path.join(tree.sources['videos_dir'], folder))
    ]
    assert 'April_09_move_up_' in ' '.join(names)
    for character in '()&;\'[]!#':
        assert any(character in name for name in names), character
    tags = r'[fhul]_(cm|nm)_np[123]_(fr|ba|le|ri)_(bad|med|goo)'
    for name in names:
        assert re.fullmatch(rf'.+_(move_up|handstand_pushups|move_sideways)_{tags}_\d+\.avi', name)


def test_splits_use_hmdb51_ids_in_its_proportions_and_hold_out_other_videos_each(tree):
    trailing = 0
    for name in ('move_up', 'handstand_pushups', 'move_sideways'):
        tested = []
        for split in (1, 2, 3):
            lines = _split_lines(tree, name, split)[:-1]
            trailing += sum(line.endswith(' ') for line in lines)
            ids = [int(line.split()[1]) for line in lines]
            # 7 sources of one clip: round(7 * 1530 / 6766) = 2 test, 2 unused, 3 train.
            assert (ids.count(1), ids.count(2), ids.count(0)) == (3, 2, 2)
            tested.append({line.split()[0] for line in lines if line.split()[1] == '2'})
        assert not tested[0] & tested[1] and not tested[1] & tested[2] and not tested[0] & tested[2]
    assert 0 < trailing < 3 * 3 * NUM_GROUPS  # Some lines end with a space, not all.


def test_each_split_keeps_a_sources_clips_together(tmp_path):
    tree = synthetic.generate(
        'hmdb51', str(tmp_path / 'hmdb'), num_classes=1, num_groups=3, clips_per_group=2,
        min_frames=2, max_frames=2, workers=1,
    )
    for split in (1, 2, 3):
        ids = {}
        for line in _split_lines(tree, 'move_up', split)[:-1]:
            name, video_id = line.split()
            source = name.split('_move_up_')[0]
            ids.setdefault(source, set()).add(video_id)
        assert len(ids) == 3 and all(len(found) == 1 for found in ids.values())


def test_videos_are_divx_avi_320x240_at_30_fps(tree):
    lengths = []
    for folder in os.listdir(tree.sources['videos_dir']):
        for name in os.listdir(os.path.join(tree.sources['videos_dir'], folder)):
            with av.open(os.path.join(tree.sources['videos_dir'], folder, name)) as container:
                assert container.format.name == 'avi'
                stream = container.streams.video[0]
                assert stream.codec_context.name == 'mpeg4'
                assert stream.codec_context.codec_tag == 'DX50'
                assert (stream.width, stream.height) == (320, 240)
                assert stream.average_rate == hmdb51.FPS == 30
                lengths.append(sum(1 for _ in container.decode(stream)))
    assert MIN_FRAMES <= min(lengths) < max(lengths) <= MAX_FRAMES
