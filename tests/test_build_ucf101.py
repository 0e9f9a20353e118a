"""Building UCF-101-format videos into TFRecords: contents, skips, atomicity, offline, CLI."""

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core.utils import gcs_utils

from r3d_jax import defaults
from r3d_jax.data import build_ucf101, synthetic, ucf101


def _data_config(tmp_path, **overrides):
    """A tiny synthetic dataset: 2 classes (MoveUp, HandstandPushups), 3 groups, 2 clips each."""
    data = defaults.get_config().data
    data.data_dir = str(tmp_path / 'tfds')
    data.raw_dir = str(tmp_path / 'raw')
    data.if_missing = 'synthetic'
    data.frame_short_side = 240  # The videos' own size: frames compare with the source as is.
    data.synthetic.num_classes = 2
    data.synthetic.num_groups = 3
    data.synthetic.clips_per_group = 2
    data.synthetic.min_frames = 5
    data.synthetic.max_frames = 12
    data.build_workers = 2
    data.update(overrides)
    return data


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    data = _data_config(tmp_path_factory.mktemp('built'))
    directory = build_ucf101.ensure_dataset(data)
    return data, directory


def _videos_dir(data):
    return os.path.join(data.raw_dir, synthetic.ucf101.VIDEOS_DIRNAME)


def _splits_dir(data):
    return os.path.join(data.raw_dir, synthetic.ucf101.SPLITS_DIRNAME)


def _examples(data, split, *, frame_short_side=None):
    builder = ucf101.load_builder(
        data.data_dir, data.split_number, frame_short_side or data.frame_short_side
    )
    dataset = builder.as_dataset(split=split, decoders={'frames': tfds.decode.SkipDecoding()})
    return {example['video_id'].decode(): example for example in tfds.as_numpy(dataset)}


def _listed(data, name):
    with open(os.path.join(_splits_dir(data), name)) as f:
        return [line.split() for line in f]


def _source_frames(path):
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


def test_counts_labels_and_metadata_match_the_split_lists(built):
    data, directory = built
    assert directory == ucf101.dataset_dir(data.data_dir, 1, 240)
    builder = ucf101.load_builder(data.data_dir, 1, 240)
    class_names = builder.info.features['label'].names
    assert class_names == ['MoveUp', 'HandstandPushups']
    for split, list_file in (('train', 'trainlist01.txt'), ('test', 'testlist01.txt')):
        listed = _listed(data, list_file)
        examples = _examples(data, split)
        assert builder.info.splits[split].num_examples == len(listed) == len(examples)
        for line in listed:
            class_name = line[0].split('/')[0]
            example = examples[line[0].removesuffix('.avi')]
            assert example['class_name'].decode() == class_name
            assert example['label'] == class_names.index(class_name)
            if split == 'train':
                assert example['label'] == int(line[1]) - 1
            assert example['num_frames'] == len(example['frames'])
            assert example['fps'] == 25.0
    assert builder.info.metadata['skipped_videos'] == []


def test_frames_match_the_source_video_frames_in_order(built):
    data, _ = built
    for video_id, example in _examples(data, 'test').items():
        source = _source_frames(os.path.join(_videos_dir(data), f'{video_id}.avi')).astype(float)
        frames = np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in example['frames']])
        assert frames.shape == source.shape
        errors = np.abs(frames[:, None].astype(float) - source[None]).mean(axis=(2, 3, 4))
        assert np.all(np.diag(errors) < 3.5), (video_id, np.diag(errors))  # JPEG quality 90.
        assert np.array_equal(errors.argmin(axis=1), np.arange(len(frames))), video_id


def test_handstand_pushups_videos_keep_their_class_and_file_name(built):
    data, _ = built
    examples = _examples(data, 'train')
    quirk = examples['HandstandPushups/v_HandStandPushups_g02_c01']
    assert quirk['class_name'] == b'HandstandPushups' and quirk['label'] == 1


def test_ensure_dataset_reuses_a_complete_build(built):
    data, directory = built
    info = os.path.join(directory, 'dataset_info.json')
    written = os.path.getmtime(info)
    assert build_ucf101.ensure_dataset(data) == directory
    assert os.path.getmtime(info) == written


def test_ensure_dataset_refuses_videos_generated_with_other_settings(built, tmp_path):
    data, _ = built
    other = _data_config(tmp_path, raw_dir=data.raw_dir)
    other.synthetic.num_classes = 3
    with pytest.raises(ValueError, match=r"generated with .*'num_classes': 2"):
        build_ucf101.ensure_dataset(other)


def test_ensure_dataset_without_synthetic_fallback_says_how_to_build(tmp_path):
    with pytest.raises(ucf101.DatasetNotBuiltError, match=r'python -m r3d_jax\.data\.build_ucf101'):
        build_ucf101.ensure_dataset(_data_config(tmp_path, if_missing=''))
    with pytest.raises(ValueError, match=r'config\.data\.if_missing must be one of'):
        build_ucf101.ensure_dataset(_data_config(tmp_path, if_missing='download'))


@pytest.fixture(scope='module')
def damaged(built, tmp_path_factory):
    """A copy of the videos with one garbage file and one cut in half."""
    data, _ = built
    root = tmp_path_factory.mktemp('damaged')
    videos_dir = str(root / 'UCF-101')
    shutil.copytree(_videos_dir(data), videos_dir)
    corrupt = os.path.join(videos_dir, 'MoveUp', 'v_MoveUp_g02_c01.avi')
    with open(corrupt, 'wb') as f:
        f.write(np.random.default_rng(0).bytes(4000))
    truncated = os.path.join(videos_dir, 'HandstandPushups', 'v_HandStandPushups_g01_c02.avi')
    with open(truncated, 'r+b') as f:
        f.truncate(os.path.getsize(truncated) // 2)
    return videos_dir, _splits_dir(data), [corrupt, truncated]


def test_undecodable_videos_fail_the_build_listing_each_and_leave_nothing(damaged, tmp_path):
    videos_dir, splits_dir, bad = damaged
    with pytest.raises(SystemExit) as exit_:
        build_ucf101.main([f'--videos_dir={videos_dir}', f'--splits_dir={splits_dir}',
                           f'--data_dir={tmp_path}', '--frame_short_side=32', '--workers=2'])
    message = exit_.value.code  # A message: Python prints it and exits with status 1.
    assert isinstance(message, str)
    assert f'[train] {bad[0]}: cannot be decoded' in message
    assert f'[test] {bad[1]}: truncated' in message
    directory = ucf101.dataset_dir(str(tmp_path), 1, 32)
    assert not os.path.exists(directory) and not ucf101.interrupted_builds(directory)
    with pytest.raises(ucf101.DatasetNotBuiltError):
        ucf101.load_builder(str(tmp_path), 1, 32)


def test_allow_skips_builds_the_rest_and_records_what_was_skipped(damaged, tmp_path, capsys):
    videos_dir, splits_dir, bad = damaged
    build_ucf101.build_dataset(videos_dir, splits_dir, str(tmp_path), frame_short_side=32,
                               workers=2, allow_skips=True)
    summary = capsys.readouterr().out
    assert 'Skipped 2 video(s)' in summary and all(path in summary for path in bad)
    builder = ucf101.load_builder(str(tmp_path), 1, 32)
    with open(os.path.join(splits_dir, 'trainlist01.txt')) as f:
        listed_train = len(f.readlines())
    assert builder.info.splits['train'].num_examples == listed_train - 1
    skipped = builder.info.metadata['skipped_videos']
    assert [(s['split'], s['path']) for s in skipped] == [('train', bad[0]), ('test', bad[1])]


def test_build_never_touches_the_network(built, tmp_path, monkeypatch):
    data, _ = built

    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(gcs_utils, 'exists', refuse)  # Every GCS look-up goes through this.
    monkeypatch.setattr(gcs_utils, '_is_gcs_disabled', False)  # The build must disable it.
    build_ucf101.build_dataset(_videos_dir(data), _splits_dir(data), str(tmp_path),
                               frame_short_side=16, workers=1)
    assert ucf101.is_built(ucf101.dataset_dir(str(tmp_path), 1, 16))


def test_a_bad_split_list_fails_before_anything_is_written(built, tmp_path):
    data, _ = built
    splits_dir = str(tmp_path / 'splits')
    shutil.copytree(_splits_dir(data), splits_dir)
    with open(os.path.join(splits_dir, 'testlist01.txt'), 'a') as f:
        f.write('MoveUp/v_MoveUp_g09_c01.avi\n')
    data_dir = tmp_path / 'tfds'
    with pytest.raises(ucf101.VideoTreeError, match=r'testlist01\.txt:\d+: video .* not found'):
        build_ucf101.build_dataset(_videos_dir(data), splits_dir, str(data_dir))
    assert not data_dir.exists()


def test_interrupted_build_leaves_nothing_loadable_and_a_rerun_completes(built, tmp_path):
    data, _ = built
    data_dir = str(tmp_path / 'tfds')
    directory = ucf101.dataset_dir(data_dir, 1, 240)
    command = [sys.executable, '-m', 'r3d_jax.data.build_ucf101',
               f'--videos_dir={_videos_dir(data)}', f'--splits_dir={_splits_dir(data)}',
               f'--data_dir={data_dir}', '--frame_short_side=240', '--workers=1']
    log = tmp_path / 'build.log'
    with open(log, 'w') as stderr:
        build = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # Kill the build (and its decoding workers) once the first videos are written.
        while not re.search(r'train videos: .*\| *[1-9]\d*/', log.read_text()):
            assert build.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()
    assert not ucf101.is_built(directory)
    assert ucf101.interrupted_builds(directory)  # It was killed mid-way.
    with pytest.raises(ucf101.DatasetNotBuiltError, match='interrupted build'):
        ucf101.load_builder(data_dir, 1, 240)

    build_ucf101.build_dataset(_videos_dir(data), _splits_dir(data), data_dir,
                               frame_short_side=240, workers=1)
    assert not ucf101.interrupted_builds(directory)
    rebuilt = ucf101.load_builder(data_dir, 1, 240)
    complete = ucf101.load_builder(data.data_dir, 1, 240)
    for split in ucf101.SPLITS:
        assert rebuilt.info.splits[split].num_examples == complete.info.splits[split].num_examples
