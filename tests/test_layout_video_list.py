"""The video_list layout: a user's list files (or class folders) of any videos."""

import os
import re

import pytest

from r3d_jax import defaults
from r3d_jax.data import layouts
from r3d_jax.data.layouts import SourceError, video_list

FILES = ['walk/a 1.mp4', 'walk/b.mkv', 'walk/c.webm', 'run/d.mp4', 'run/e e.avi', 'jump/f.mov']


def _data(**overrides):
    data = defaults.get_config().data
    data.dataset = 'video_list'
    data.video_list_name = 'clips'
    data.update(overrides)
    return data


def _tree(root, lists, files=FILES):
    videos_dir = os.path.join(root, 'videos')
    for relative in files:
        os.makedirs(os.path.dirname(os.path.join(videos_dir, relative)), exist_ok=True)
        open(os.path.join(videos_dir, relative), 'w').close()
    splits_dir = os.path.join(root, 'lists')
    os.makedirs(splits_dir, exist_ok=True)
    for name, text in lists.items():
        with open(os.path.join(splits_dir, name), 'w') as f:
            f.write(text)
    return {'videos_dir': videos_dir, 'splits_dir': splits_dir}


def _read(sources, **overrides):
    return video_list.read_contents(sources, _data(**overrides))


def test_lists_with_classes_file_take_names_and_indices_and_paths_with_spaces(tmp_path):
    sources = _tree(str(tmp_path), {
        'classes.txt': 'walk\nrun\njump\n',
        'train.txt': 'walk/a 1.mp4 walk\nrun/d.mp4 1\njump/f.mov 2\n',
        'test.txt': 'walk/b.mkv 0\nrun/e e.avi run\n',
        'val.txt': 'walk/c.webm walk\n',
    })
    contents = _read(sources)
    assert contents.class_names == ['walk', 'run', 'jump']
    assert list(contents.splits) == ['train', 'test', 'val']
    summary = {split: [(e.video_id, e.label, e.class_name) for e in entries]
               for split, entries in contents.splits.items()}
    assert summary == {
        'train': [('walk/a 1', 0, 'walk'), ('run/d', 1, 'run'), ('jump/f', 2, 'jump')],
        'test': [('walk/b', 0, 'walk'), ('run/e e', 1, 'run')],
        'val': [('walk/c', 0, 'walk')],
    }
    assert contents.splits['test'][1].path == os.path.join(sources['videos_dir'], 'run/e e.avi')
    assert contents.splits['test'][1].source.endswith('test.txt:2')


def test_without_classes_file_the_sorted_training_labels_are_the_classes(tmp_path):
    sources = _tree(str(tmp_path), {
        'train.txt': 'walk/a 1.mp4 walk\nrun/d.mp4 run\n',
        'test.txt': 'run/e e.avi run\n',
    })
    contents = _read(sources)
    assert contents.class_names == ['run', 'walk']
    assert list(contents.splits) == ['train', 'test']
    assert [e.label for e in contents.splits['train']] == [1, 0]


TEST = {'test.txt': 'walk/b.mkv walk\n'}


@pytest.mark.parametrize(
    ('lists', 'message'),
    [
        ({**TEST, 'classes.txt': 'walk\nrun\n',
          'train.txt': 'walk/a 1.mp4 walk\njump/f.mov jump\n'},
         r"train\.txt:2: class 'jump' is not in .*classes\.txt"),
        ({**TEST, 'classes.txt': 'walk\nrun\n', 'train.txt': 'walk/a 1.mp4 2\n'},
         r'train\.txt:1: label 2 is out of range: .*classes\.txt lists 2 classes \(labels 0-1\)'),
        ({**TEST, 'train.txt': 'walk/a 1.mp4 0\n'},
         r'train\.txt:1: integer label 0 needs classes\.txt'),
        ({'train.txt': 'walk/a 1.mp4 walk\n', 'test.txt': 'run/d.mp4 run\n'},
         r"test\.txt:1: class 'run' has no training video"),
        ({**TEST, 'train.txt': 'walk/zz.mp4 walk\n'},
         r'train\.txt:1: video .*videos/walk/zz\.mp4 not found'),
        ({'train.txt': 'walk/a 1.mp4 walk\n', 'test.txt': '\n'}, r'test\.txt: no videos listed'),
        ({'train.txt': 'walk/a 1.mp4 walk\n'}, r'test\.txt: file not found'),
        ({**TEST, 'train.txt': 'walk/a 1.mp4 walk\nwalk/b.mkv walk\n'},
         r'test\.txt:1: walk/b is also in the train split, listed at .*train\.txt:2'),
        ({**TEST, 'train.txt': 'walk/a\n'}, r'train\.txt:1: expected "<relative path> <label>"'),
        ({**TEST, 'classes.txt': 'walk\nwalk\n', 'train.txt': 'walk/a 1.mp4 walk\n'},
         r"classes\.txt:2: class 'walk' is listed twice"),
    ],
)
def test_bad_lists_name_file_and_line(tmp_path, lists, message):
    with pytest.raises(SourceError, match=message):
        _read(_tree(str(tmp_path), lists))


def test_class_folders_split_each_class_with_the_seed(tmp_path):
    files = [f'{c}/{c}_{i}.mp4' for c in ('walk', 'run') for i in range(10)] + ['run/notes.txt']
    sources = {'videos_dir': _tree(str(tmp_path), {}, files)['videos_dir']}
    contents = _read(sources, video_list_test_fraction=0.3, video_list_seed=1)
    assert contents.class_names == ['run', 'walk']
    test = [e.video_id for e in contents.splits['test']]
    train = [e.video_id for e in contents.splits['train']]
    assert len(test) == 6 and len(train) == 14  # 3 of each class's 10; notes.txt is no video.
    assert sorted(test + train) == sorted(os.path.splitext(f)[0] for f in files[:-1])
    again = _read(sources, video_list_test_fraction=0.3, video_list_seed=1)
    assert [e.video_id for e in again.splits['test']] == test
    other = _read(sources, video_list_test_fraction=0.3, video_list_seed=2)
    assert [e.video_id for e in other.splits['test']] != test


def test_class_folder_problems_are_named(tmp_path):
    sources = {'videos_dir': _tree(str(tmp_path), {}, ['walk/a.mp4', 'walk/b.mp4',
                                                        'run/notes.txt'])['videos_dir']}
    run = re.escape(os.path.join(sources['videos_dir'], 'run'))
    with pytest.raises(SourceError, match=rf'{run}: 0 video file\(s\); a class needs at least'):
        _read(sources)
    loose = tmp_path / 'loose'
    loose.mkdir()
    (loose / 'clip.mp4').touch()
    with pytest.raises(SourceError, match=r'clip\.mp4: videos must sit in class folders'):
        _read({'videos_dir': str(loose)})
    with pytest.raises(ValueError, match=r'video_list_test_fraction .* strictly between 0 and 1'):
        _read(sources, video_list_test_fraction=1.0)


def test_split_folders_give_the_splits_and_trains_folders_the_classes(tmp_path):
    files = ['train/walk/a.mp4', 'train/walk/b.mp4', 'train/run/c.mp4', 'test/run/d.mkv',
             'test/walk/e.mp4', 'val/walk/f.mp4']
    sources = {'videos_dir': _tree(str(tmp_path), {}, files)['videos_dir']}
    contents = _read(sources)
    assert contents.class_names == ['run', 'walk']
    assert {split: [(e.video_id, e.label) for e in entries]
            for split, entries in contents.splits.items()} == {
        'train': [('run/c', 0), ('walk/a', 1), ('walk/b', 1)],
        'test': [('run/d', 0), ('walk/e', 1)],
        'val': [('walk/f', 1)],
    }
    os.makedirs(os.path.join(sources['videos_dir'], 'test', 'jump'))
    open(os.path.join(sources['videos_dir'], 'test', 'jump', 'g.mp4'), 'w').close()
    with pytest.raises(SourceError, match=r"test/jump: class 'jump' has no training folder"):
        _read(sources)


@pytest.mark.parametrize('name', ['', 'my clips', '../up', '_x'])
def test_the_dataset_name_must_be_a_plain_name(name):
    with pytest.raises(ValueError, match=r'config\.data\.video_list_name \(--video_list_name\)'):
        layouts.config_name(_data(video_list_name=name))


def test_the_dataset_name_is_its_identity_on_disk():
    assert layouts.config_name(_data(video_list_name='My-clips_2')) == 'My-clips_2_128px'
    assert layouts.config_name(_data(jpeg_quality=75)) == 'clips_128px_q75'
