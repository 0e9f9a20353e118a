"""UCF-101 split files, video resolution, frame decoding and the dataset's locations."""

import concurrent.futures
import io
import os
import re
from concurrent.futures.process import BrokenProcessPool

import av
import numpy as np
import pytest
from PIL import Image

from r3d_jax.data import synthetic, ucf101

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
    return videos_dir, splits_dir


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
    with pytest.raises(ucf101.SplitFileError, match=message):
        ucf101.read_class_index(_write(tmp_path / 'classInd.txt', text))


def test_missing_split_file_is_named(tmp_path):
    with pytest.raises(ucf101.SplitFileError, match=r'classInd\.txt: file not found'):
        ucf101.read_class_index(str(tmp_path / 'classInd.txt'))


def test_train_list_labels_come_from_class_index(tmp_path):
    path = _write(tmp_path / 'trainlist01.txt', 'MoveUp/v_MoveUp_g02_c01.avi 1\r\n'
                  'HandstandPushups/v_HandStandPushups_g02_c01.avi 2\r\n')
    listed = ucf101.read_split_list(path, CLASSES, labelled=True)
    assert [(v.class_name, v.label) for v in listed] == [('MoveUp', 0), ('HandstandPushups', 1)]
    assert listed[1].source == f'{path}:2'


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
    with pytest.raises(ucf101.SplitFileError, match=message):
        ucf101.read_split_list(path, CLASSES, labelled=labelled)


def test_empty_list_is_rejected(tmp_path):
    with pytest.raises(ucf101.SplitFileError, match=r'testlist01\.txt: no videos listed'):
        ucf101.read_split_list(_write(tmp_path / 'testlist01.txt', ''), CLASSES, labelled=False)


def test_file_names_match_ignoring_case_and_class_comes_from_folder(tmp_path):
    """The list may spell HandstandPushups either way; the id keeps the name on disk."""
    videos_dir, splits_dir = _tree(
        tmp_path,
        QUIRK_FILES,
        train='MoveUp/v_MoveUp_g02_c01.avi 1\nHandstandPushups/v_HandstandPushups_g02_c01.avi 2\n',
        test='MoveUp/v_MoveUp_g01_c01.avi\nHandstandPushups/v_HandStandPushups_g01_c01.avi\n',
    )
    contents = ucf101.read_split(videos_dir, splits_dir, 1)
    assert contents.class_names == CLASSES
    quirk = contents.videos['train'][1]
    assert quirk.video_id == 'HandstandPushups/v_HandStandPushups_g02_c01'
    assert quirk.class_name == 'HandstandPushups' and quirk.label == 1
    assert quirk.path == os.path.join(videos_dir, 'HandstandPushups/v_HandStandPushups_g02_c01.avi')
    assert [v.video_id for v in contents.videos['test']] == [
        'MoveUp/v_MoveUp_g01_c01', 'HandstandPushups/v_HandStandPushups_g01_c01'
    ]


def test_class_is_taken_from_folder_not_file_name(tmp_path):
    videos_dir, splits_dir = _tree(
        tmp_path,
        ['MoveUp/v_HandstandPushups_g01_c01.avi', 'MoveUp/v_MoveUp_g02_c01.avi'],
        train='MoveUp/v_MoveUp_g02_c01.avi 1\n',
        test='MoveUp/v_HandstandPushups_g01_c01.avi\n',
    )
    (video,) = ucf101.read_split(videos_dir, splits_dir, 1).videos['test']
    assert (video.class_name, video.label) == ('MoveUp', 0)


def test_missing_video_names_list_line_and_expected_path(tmp_path):
    videos_dir, splits_dir = _tree(
        tmp_path,
        QUIRK_FILES,
        train='MoveUp/v_MoveUp_g02_c01.avi 1\n',
        test='MoveUp/v_MoveUp_g01_c01.avi\nMoveUp/v_MoveUp_g09_c01.avi\n',
    )
    expected = os.path.join(videos_dir, 'MoveUp', 'v_MoveUp_g09_c01.avi')
    message = rf'testlist01\.txt:2: video {re.escape(expected)} not found'
    with pytest.raises(ucf101.VideoTreeError, match=message):
        ucf101.read_split(videos_dir, splits_dir, 1)


def test_missing_class_folder_is_named(tmp_path):
    videos_dir, splits_dir = _tree(
        tmp_path,
        QUIRK_FILES[:2],
        train='MoveUp/v_MoveUp_g02_c01.avi 1\n',
        test='HandstandPushups/v_HandStandPushups_g01_c01.avi\n',
    )
    folder = os.path.join(videos_dir, 'HandstandPushups')
    message = rf'testlist01\.txt:1: class folder {re.escape(folder)} not found'
    with pytest.raises(ucf101.VideoTreeError, match=message):
        ucf101.read_split(videos_dir, splits_dir, 1)


def test_video_in_both_train_and_test_is_rejected(tmp_path):
    videos_dir, splits_dir = _tree(
        tmp_path, QUIRK_FILES, train='MoveUp/v_MoveUp_g01_c01.avi 1\n',
        test='MoveUp/v_MoveUp_g01_c01.avi\n',
    )
    with pytest.raises(ucf101.SplitFileError, match=r'testlist01\.txt:1: .* is also in'):
        ucf101.read_split(videos_dir, splits_dir, 1)


def test_missing_directories_and_bad_split_number_are_rejected(tmp_path):
    nowhere = re.escape(f'videos directory {tmp_path}/nowhere does not exist')
    with pytest.raises(ucf101.VideoTreeError, match=nowhere):
        ucf101.read_split(str(tmp_path / 'nowhere'), str(tmp_path), 1)
    none = re.escape(f'split files directory {tmp_path}/none does not exist')
    with pytest.raises(ucf101.VideoTreeError, match=none):
        ucf101.read_split(str(tmp_path), str(tmp_path / 'none'), 1)
    with pytest.raises(ValueError, match='split_number must be one of'):
        ucf101.read_split(str(tmp_path), str(tmp_path), 4)


def test_frame_size_keeps_aspect_with_the_requested_short_side():
    assert ucf101.frame_size(320, 240, 128) == (171, 128)
    assert ucf101.frame_size(240, 320, 128) == (128, 171)
    assert ucf101.frame_size(320, 240, 240) == (320, 240)


def test_frames_are_stored_smaller_than_standard_jpeg_with_the_same_pixels(video):
    _, source = video
    standard = io.BytesIO()
    Image.fromarray(source[0]).save(standard, format='JPEG', quality=ucf101.JPEG_QUALITY)
    stored = ucf101.encode_frame(source[0])
    assert len(stored) < 0.97 * len(standard.getvalue())
    pixels = [np.asarray(Image.open(io.BytesIO(data))) for data in (stored, standard.getvalue())]
    assert np.array_equal(*pixels)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    """A 12-frame synthetic video and its frames as PyAV decodes them."""
    path = str(tmp_path_factory.mktemp('video') / 'v_MoveUp_g01_c01.avi')
    synthetic.write_avi(path, synthetic.render_frames(synthetic.motion_classes()[0], 12, (0,)))
    with av.open(path) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    return path, np.stack(frames)


def test_decoded_frames_match_source_frames_in_order(video):
    path, source = video
    decoded = ucf101.decode_video(path, frame_short_side=120)
    assert decoded.fps == 25.0
    frames = np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in decoded.frames])
    assert frames.shape == (12, 120, 160, 3)
    expected = np.stack(
        [np.asarray(Image.fromarray(f).resize((160, 120), Image.BICUBIC)) for f in source]
    ).astype(np.float32)
    errors = np.abs(frames[:, None].astype(np.float32) - expected[None]).mean(axis=(2, 3, 4))
    # JPEG (quality 90) on the grainy background plus a different bicubic resampler: ~4 levels.
    assert np.all(np.diag(errors) < 6), np.diag(errors)
    assert np.array_equal(errors.argmin(axis=1), np.arange(12))  # Each frame in its place.


def test_empty_garbage_and_truncated_videos_are_reported(video, tmp_path):
    path, _ = video
    empty = _write(tmp_path / 'empty.avi', '')
    garbage = str(tmp_path / 'garbage.avi')
    with open(garbage, 'wb') as f:
        f.write(np.random.default_rng(0).bytes(5000))
    truncated = str(tmp_path / 'truncated.avi')
    with open(path, 'rb') as source, open(truncated, 'wb') as f:
        f.write(source.read(os.path.getsize(path) // 2))
    for bad, reason in ((empty, 'empty file'), (garbage, 'cannot be decoded'),
                        (truncated, 'truncated')):
        with pytest.raises(ucf101.VideoDecodeError, match=reason):
            ucf101.decode_video(bad, 128)


def test_load_builder_explains_how_to_build_a_missing_dataset(tmp_path):
    directory = ucf101.dataset_dir(str(tmp_path), 2, 64)
    assert directory == os.path.join(tmp_path, 'ucf101_frames', 'split2_64px', '1.0.0')
    with pytest.raises(ucf101.DatasetNotBuiltError) as missing:
        ucf101.load_builder(str(tmp_path), 2, 64)
    message = str(missing.value)
    assert directory in message
    assert 'python -m r3d_jax.data.build_ucf101' in message
    assert f'--data_dir={tmp_path} --split=2 --frame_short_side=64' in message
    leftover = os.path.join(os.path.dirname(directory), 'incomplete.ABC123_1.0.0')
    os.makedirs(leftover)
    interrupted = re.escape(f'interrupted build left {leftover}')
    with pytest.raises(ucf101.DatasetNotBuiltError, match=interrupted):
        ucf101.load_builder(str(tmp_path), 2, 64)


def test_builder_configs_are_named_by_split_and_frame_size():
    predefined = ucf101.builder_config(1, 128)
    assert predefined.name == 'split1_128px'
    assert predefined is ucf101.builder_config(1, 128)
    custom = ucf101.builder_config(3, 64)
    assert (custom.name, custom.split_number, custom.frame_short_side) == ('split3_64px', 3, 64)
    with pytest.raises(ValueError, match='split_number'):
        ucf101.builder_config(0, 128)
    with pytest.raises(ValueError, match='frame_short_side'):
        ucf101.builder_config(1, 0)


class _BrokenPool(concurrent.futures.Executor):
    """A pool whose decoding process has died: every result is a BrokenProcessPool."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        future.set_exception(BrokenProcessPool('worker died'))
        return future


def test_a_dead_decoding_process_names_the_videos_in_flight():
    results = ucf101.decode_in_order(['a.avi', 'b.avi', 'c.avi'], 128, _BrokenPool(), window=2)
    with pytest.raises(RuntimeError, match='A decoding process died') as failure:
        next(results)
    assert 'a.avi' in str(failure.value) and 'b.avi' in str(failure.value)
    assert 'c.avi' not in str(failure.value)
