"""The UCF-101 layout: classInd and the split lists, resolved to the videos on disk."""

import os
import re

import pytest

from r3d_jax import defaults
from r3d_jax.data.layouts import SourceError, ucf101

CLASSES = ['MoveUp', 'HandstandPushups']


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        f.write(text)
    return str(path)


def _tree(root, files, train, test, class_index='1 MoveUp\n2 HandstandPushups\n'):
    """Split files and empty placeholder videos: enough to parse and resolve, not to decode."""
    videos_dir, splits_dir = os.path.join(root, 'UCF-101'), os.path.join(root, 'splits')
    for relative in files:
        _write(os.path.join(videos_dir, relative), '')
    _write(os.path.join(splits_dir, 'classInd.txt'), class_index)
    _write(os.path.join(splits_dir, 'trainlist01.txt'), train)
    _write(os.path.join(splits_dir, 'testlist01.txt'), test)
    return {'videos_dir': videos_dir, 'splits_dir': splits_dir}


def _read(sources, split_number=1):
    data = defaults.get_config().data
    data.split_number = split_number
    return ucf101.read_contents(sources, data)


QUIRK_FILES = [
    'MoveUp/v_MoveUp_g01_c01.avi',
    'MoveUp/v_MoveUp_g02_c01.avi',
    'HandstandPushups/v_HandStandPushups_g01_c01.avi',
    'HandstandPushups/v_HandStandPushups_g02_c01.avi',
]


def test_class_index_gives_names_in_label_order_and_tolerates_crlf(tmp_path):
    path = _write(tmp_path / 'classInd.txt', '1 MoveUp\r\n2 HandstandPushups\r\n\r\n')
    assert ucf101.read_class_index(path) == CLASSES


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('1 MoveUp\n3 Spin\n', r'classInd\.txt:2: expected index 2'),
        ('1 MoveUp\nSpin\n', r'classInd\.txt:2: expected "<index> <ClassName>"'),
        ('1 MoveUp\n2 MoveUp\n', r'classInd\.txt:2: class .MoveUp. is listed twice'),
        ('\n', r'classInd\.txt: no classes listed'),
    ],
)
def test_bad_class_index_names_file_and_line(tmp_path, text, message):
    with pytest.raises(SourceError, match=message):
        ucf101.read_class_index(_write(tmp_path / 'classInd.txt', text))


def test_missing_split_file_is_named(tmp_path):
    with pytest.raises(SourceError, match=r'classInd\.txt: file not found'):
        ucf101.read_class_index(str(tmp_path / 'classInd.txt'))


@pytest.mark.parametrize(
    ('line', 'labelled', 'message'),
    [
        ('Spin/v_Spin_g01_c01.avi 1', True, r'trainlist01\.txt:2: unknown class .Spin.'),
        ('MoveUp/v_MoveUp_g03_c01.avi 2', True, r'trainlist01\.txt:2: label 2 does not match'),
        ('MoveUp/v_MoveUp_g03_c01.avi', True, r'trainlist01\.txt:2: expected "<Class>/<file>'),
        ('MoveUp/v_MoveUp_g03_c01.avi 1', False, r'trainlist01\.txt:2: expected "<Class>/<file>'),
        ('v_MoveUp_g03_c01.avi 1', True, r'trainlist01\.txt:2: expected'),
        ('MoveUp/v_MoveUp_g01_c01.avi 1', True, r'trainlist01\.txt:2: .* already listed on line 1'),
    ],
)
def test_bad_list_line_names_file_and_line(tmp_path, line, labelled, message):
    first = 'MoveUp/v_MoveUp_g01_c01.avi' + (' 1' if labelled else '')
    path = _write(tmp_path / 'trainlist01.txt', f'{first}\n{line}\n')
    with pytest.raises(SourceError, match=message):
        ucf101.read_split_list(path, CLASSES, labelled=labelled)


def test_empty_list_is_rejected(tmp_path):
    with pytest.raises(SourceError, match=r'testlist01\.txt: no videos listed'):
        ucf101.read_split_list(_write(tmp_path / 'testlist01.txt', ''), CLASSES, labelled=False)


def test_counts_and_labels_equal_the_lists_and_class_comes_from_the_folder(tmp_path):
    """The list may spell HandstandPushups either way; the id keeps the name on disk."""
    sources = _tree(
        tmp_path,
        QUIRK_FILES,
        train='MoveUp/v_MoveUp_g02_c01.avi 1\nHandstandPushups/v_HandstandPushups_g02_c01.avi 2\n',
        test='MoveUp/v_MoveUp_g01_c01.avi\nHandstandPushups/v_HandStandPushups_g01_c01.avi\n',
    )
    contents = _read(sources)
    assert contents.class_names == CLASSES
    quirk = contents.splits['train'][1]
    assert quirk.video_id == 'HandstandPushups/v_HandStandPushups_g02_c01'
    assert (quirk.class_name, quirk.label) == ('HandstandPushups', 1)
    assert quirk.path == os.path.join(
        sources['videos_dir'], 'HandstandPushups/v_HandStandPushups_g02_c01.avi'
    )
    assert quirk.source.endswith('trainlist01.txt:2')
    assert [(v.video_id, v.label) for v in contents.splits['test']] == [
        ('MoveUp/v_MoveUp_g01_c01', 0), ('HandstandPushups/v_HandStandPushups_g01_c01', 1)
    ]


def test_class_is_taken_from_folder_not_file_name(tmp_path):
    sources = _tree(
        tmp_path,
        ['MoveUp/v_HandstandPushups_g01_c01.avi', 'MoveUp/v_MoveUp_g02_c01.avi'],
        train='MoveUp/v_MoveUp_g02_c01.avi 1\n',
        test='MoveUp/v_HandstandPushups_g01_c01.avi\n',
    )
    (video,) = _read(sources).splits['test']
    assert (video.class_name, video.label) == ('MoveUp', 0)


def test_missing_video_names_list_line_and_expected_path(tmp_path):
    sources = _tree(
        tmp_path,
        QUIRK_FILES,
        train='MoveUp/v_MoveUp_g02_c01.avi 1\n',
        test='MoveUp/v_MoveUp_g01_c01.avi\nMoveUp/v_MoveUp_g09_c01.avi\n',
    )
    expected = os.path.join(sources['videos_dir'], 'MoveUp', 'v_MoveUp_g09_c01.avi')
    message = rf'testlist01\.txt:2: video {re.escape(expected)} not found'
    with pytest.raises(SourceError, match=message):
        _read(sources)


def test_missing_class_folder_is_named(tmp_path):
    sources = _tree(
        tmp_path,
        QUIRK_FILES[:2],
        train='MoveUp/v_MoveUp_g02_c01.avi 1\n',
        test='HandstandPushups/v_HandStandPushups_g01_c01.avi\n',
    )
    folder = os.path.join(sources['videos_dir'], 'HandstandPushups')
    with pytest.raises(SourceError, match=rf'testlist01\.txt:1: class folder {re.escape(folder)} '):
        _read(sources)


def test_video_in_both_train_and_test_is_rejected(tmp_path):
    sources = _tree(
        tmp_path, QUIRK_FILES, train='MoveUp/v_MoveUp_g01_c01.avi 1\n',
        test='MoveUp/v_MoveUp_g01_c01.avi\n',
    )
    with pytest.raises(SourceError, match=r'testlist01\.txt:1: .* is also in the train split, '
                                          r'listed at .*trainlist01\.txt:1'):
        _read(sources)


def test_missing_directories_and_bad_split_number_are_rejected(tmp_path):
    nowhere = re.escape(f'videos directory {tmp_path}/nowhere does not exist')
    with pytest.raises(SourceError, match=nowhere):
        _read({'videos_dir': str(tmp_path / 'nowhere'), 'splits_dir': str(tmp_path)})
    none = re.escape(f'split files directory {tmp_path}/none does not exist')
    with pytest.raises(SourceError, match=none):
        _read({'videos_dir': str(tmp_path), 'splits_dir': str(tmp_path / 'none')})
    with pytest.raises(ValueError, match=r'config\.data\.split_number \(--split\) must be one of'):
        _read({'videos_dir': str(tmp_path), 'splits_dir': str(tmp_path)}, split_number=4)
