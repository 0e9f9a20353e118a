"""Building, finding and loading datasets, shown on UCF-101: contents, identity on disk, skips,
atomicity, offline, a killed build resumed, Beam against the local build, the command line."""

import contextlib
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
from r3d_jax.data import datasets, frames_builder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data_config(tmp_path, **overrides):
    """A tiny synthetic UCF-101: 2 classes (MoveUp, HandstandPushups), 3 groups, 2 clips each."""
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


def _sources(data):
    return {'videos_dir': os.path.join(data.raw_dir, 'UCF-101'),
            'splits_dir': os.path.join(data.raw_dir, 'ucfTrainTestlist')}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    data = _data_config(tmp_path_factory.mktemp('built'))
    return data, datasets.ensure_dataset(data)


def examples(directory, split):
    """{video_id: example} of a built split, frames as JPEG bytes."""
    builder = tfds.builder_from_directory(directory)
    dataset = builder.as_dataset(split=split, decoders={'frames': tfds.decode.SkipDecoding()})
    return {example['video_id'].decode(): example for example in tfds.as_numpy(dataset)}


def assert_same_examples(directory, other):
    for split in ('train', 'test'):
        ours, theirs = examples(directory, split), examples(other, split)
        assert sorted(ours) == sorted(theirs)
        for video_id, example in ours.items():
            for key in ('label', 'class_name', 'num_frames', 'fps'):
                assert example[key] == theirs[video_id][key], (video_id, key)
            assert list(example['frames']) == list(theirs[video_id]['frames']), video_id


def _listed_in(sources, name):
    with open(os.path.join(sources['splits_dir'], name)) as f:
        return [line.split() for line in f]


def test_counts_labels_and_metadata_match_the_split_lists(built):
    data, directory = built
    assert directory == os.path.join(data.data_dir, 'ucf101_frames', 'split1_240px', '1.0.0')
    builder = datasets.load_builder(data)
    class_names = builder.info.features['label'].names
    assert class_names == ['MoveUp', 'HandstandPushups']
    for split, list_file in (('train', 'trainlist01.txt'), ('test', 'testlist01.txt')):
        listed = _listed_in(_sources(data), list_file)
        stored = examples(directory, split)
        assert builder.info.splits[split].num_examples == len(listed) == len(stored)
        for line in listed:
            class_name = line[0].split('/')[0]
            example = stored[line[0].removesuffix('.avi')]
            assert example['class_name'].decode() == class_name
            assert example['label'] == class_names.index(class_name)
            if split == 'train':
                assert example['label'] == int(line[1]) - 1
            assert example['num_frames'] == len(example['frames'])
            assert example['fps'] == 25.0
        report = builder.info.metadata['build']['splits'][split]
        assert report == {'listed': len(listed), 'found': len(listed), 'decoded': len(listed),
                          'skipped': 0, 'codecs': {'mpeg4': len(listed)}}
    assert builder.info.metadata['skipped_videos'] == []
    assert not os.path.exists(f'{directory}.partial')  # The build cache goes once complete.


def test_frames_match_the_source_video_frames_in_order(built):
    data, directory = built
    for video_id, example in examples(directory, 'test').items():
        path = os.path.join(_sources(data)['videos_dir'], f'{video_id}.avi')
        with av.open(path) as container:
            source = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])
        frames = np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in example['frames']])
        assert frames.shape == source.shape
        errors = np.abs(frames[:, None].astype(float) - source[None]).mean(axis=(2, 3, 4))
        assert np.all(np.diag(errors) < 3.5), (video_id, np.diag(errors))  # JPEG quality 90.
        assert np.array_equal(errors.argmin(axis=1), np.arange(len(frames))), video_id


def test_handstand_pushups_videos_keep_their_class_and_file_name(built):
    _, directory = built
    quirk = examples(directory, 'train')['HandstandPushups/v_HandStandPushups_g02_c01']
    assert quirk['class_name'] == b'HandstandPushups' and quirk['label'] == 1


def test_a_complete_build_is_reused_and_other_contents_under_its_name_refused(built, tmp_path):
    data, directory = built
    info = os.path.join(directory, 'dataset_info.json')
    written = os.path.getmtime(info)
    assert datasets.ensure_dataset(data) == directory
    assert datasets.build_dataset(data, _sources(data)) == directory
    assert os.path.getmtime(info) == written
    splits_dir = shutil.copytree(_sources(data)['splits_dir'], tmp_path / 'lists')
    with open(splits_dir / 'testlist01.txt') as f:
        lines = f.readlines()
    (splits_dir / 'testlist01.txt').write_text(''.join(lines[1:]))
    with pytest.raises(ValueError, match='is built from other lists or annotations'):
        datasets.build_dataset(data, {**_sources(data), 'splits_dir': str(splits_dir)})


def test_identity_on_disk_keeps_old_ucf101_builds_and_separates_jpeg_qualities(tmp_path):
    data = _data_config(tmp_path, split_number=2, frame_short_side=64)
    assert datasets.dataset_dir(data) == os.path.join(
        tmp_path, 'tfds', 'ucf101_frames', 'split2_64px', '1.0.0'
    )
    data.jpeg_quality = 95
    assert datasets.dataset_dir(data).endswith('split2_64px_q95/1.0.0')


def test_ensure_dataset_refuses_videos_generated_with_other_settings(built, tmp_path):
    data, _ = built
    other = _data_config(tmp_path, raw_dir=data.raw_dir)
    other.synthetic.num_classes = 3
    with pytest.raises(ValueError, match=r"generated with .*'num_classes': 2"):
        datasets.ensure_dataset(other)


def test_a_missing_dataset_says_how_to_build_it(tmp_path):
    data = _data_config(tmp_path, if_missing='', split_number=2, frame_short_side=64)
    with pytest.raises(datasets.DatasetNotBuiltError) as missing:
        datasets.ensure_dataset(data)
    message = str(missing.value)
    assert datasets.dataset_dir(data) in message
    assert ('python -m r3d_jax.data.build --dataset=ucf101 --videos_dir=<UCF-101/' in message)
    assert f'--split=2 --data_dir={data.data_dir} --frame_short_side=64' in message
    leftover = os.path.join(os.path.dirname(datasets.dataset_dir(data)), 'incomplete.ABC_1.0.0')
    os.makedirs(leftover)
    with pytest.raises(datasets.DatasetNotBuiltError, match=re.escape(f'left {leftover}')):
        datasets.load_builder(data)
    with pytest.raises(ValueError, match=r'config\.data\.if_missing must be one of'):
        datasets.ensure_dataset(_data_config(tmp_path, if_missing='download'))


@pytest.fixture(scope='module')
def damaged(built, tmp_path_factory):
    """A copy of the videos with one garbage file (train) and one cut in half (test)."""
    data, _ = built
    root = tmp_path_factory.mktemp('damaged')
    videos_dir = str(root / 'UCF-101')
    shutil.copytree(_sources(data)['videos_dir'], videos_dir)
    corrupt = os.path.join(videos_dir, 'MoveUp', 'v_MoveUp_g02_c01.avi')
    with open(corrupt, 'wb') as f:
        f.write(np.random.default_rng(0).bytes(4000))
    truncated = os.path.join(videos_dir, 'HandstandPushups', 'v_HandStandPushups_g01_c02.avi')
    with open(truncated, 'r+b') as f:
        f.truncate(os.path.getsize(truncated) // 2)
    return {**_sources(data), 'videos_dir': videos_dir}, [corrupt, truncated]


def test_undecodable_videos_fail_a_strict_build_listing_each_and_leave_nothing(damaged, tmp_path):
    sources, bad = damaged
    data = _data_config(tmp_path, frame_short_side=32)
    with pytest.raises(frames_builder.SkippedVideosError) as failure:
        datasets.build_dataset(data, sources, workers=2)
    message = str(failure.value)
    assert 'train 1 of 8, test 1 of 4; at most a fraction 0.0 may be' in message
    assert f'[train] {bad[0]}: cannot be decoded' in message
    assert f'[test] {bad[1]}: truncated' in message
    assert f'The decoded videos stay in {datasets.cache_dir(data)}: a rerun reuses them' in message
    directory = datasets.dataset_dir(data)
    assert not os.path.exists(directory) and not datasets.interrupted_builds(directory)
    with pytest.raises(datasets.DatasetNotBuiltError, match='rerunning it reuses'):
        datasets.load_builder(data)


def test_a_skip_fraction_builds_the_rest_and_records_what_was_skipped(damaged, tmp_path, capsys):
    sources, bad = damaged
    data = _data_config(tmp_path, frame_short_side=32, max_skip_fraction=0.25)
    datasets.build_dataset(data, sources, workers=2)
    summary = capsys.readouterr().out
    assert 'train: 8 listed, 8 found, 7 decoded, 1 skipped (mpeg4 7)' in summary
    assert 'Skipped 2 video(s)' in summary and all(path in summary for path in bad)
    builder = datasets.load_builder(data)
    assert builder.info.splits['train'].num_examples == 7
    skipped = builder.info.metadata['skipped_videos']
    assert [(s['split'], s['path']) for s in skipped] == [('train', bad[0]), ('test', bad[1])]
    assert skipped[0]['video_id'] == 'MoveUp/v_MoveUp_g02_c01'
    line = [row[0] for row in _listed_in(sources, 'trainlist01.txt')].index(
        'MoveUp/v_MoveUp_g02_c01.avi'
    ) + 1
    assert skipped[0]['source'] == os.path.join(sources['splits_dir'], f'trainlist01.txt:{line}')


def test_the_beam_build_gives_the_local_builds_examples_and_skips(damaged, tmp_path):
    sources, _ = damaged
    local = _data_config(tmp_path / 'local', frame_short_side=32, max_skip_fraction=0.25)
    beam = _data_config(tmp_path / 'beam', frame_short_side=32, max_skip_fraction=0.25)
    datasets.build_dataset(local, sources, workers=2)
    datasets.build_dataset(beam, sources, beam_runner='DirectRunner')
    assert_same_examples(datasets.dataset_dir(beam), datasets.dataset_dir(local))
    metadata = [datasets.load_builder(d).info.metadata for d in (local, beam)]
    assert metadata[0]['skipped_videos'] == metadata[1]['skipped_videos'] != []
    assert metadata[0]['build']['splits'] == metadata[1]['build']['splits']


def test_a_beam_build_without_apache_beam_says_how_to_install_it(built, tmp_path, monkeypatch):
    data, _ = built
    monkeypatch.setitem(sys.modules, 'apache_beam', None)  # `import apache_beam` now fails.
    with pytest.raises(frames_builder.BeamNotInstalledError, match=r'requirements-beam\.txt'):
        datasets.build_dataset(_data_config(tmp_path), _sources(data), beam_runner='DirectRunner')


def test_build_never_touches_the_network(built, tmp_path, monkeypatch):
    data, _ = built

    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(gcs_utils, 'exists', refuse)  # Every GCS look-up goes through this.
    monkeypatch.setattr(gcs_utils, '_is_gcs_disabled', False)  # The build must disable it.
    other = _data_config(tmp_path, frame_short_side=16)
    datasets.build_dataset(other, _sources(data), workers=1)
    assert datasets.is_built(datasets.dataset_dir(other))


def test_a_bad_split_list_fails_before_anything_is_written(built, tmp_path):
    data, _ = built
    splits_dir = str(tmp_path / 'splits')
    shutil.copytree(_sources(data)['splits_dir'], splits_dir)
    with open(os.path.join(splits_dir, 'testlist01.txt'), 'a') as f:
        f.write('MoveUp/v_MoveUp_g09_c01.avi\n')
    other = _data_config(tmp_path)
    with pytest.raises(datasets.layouts.SourceError,
                       match=r'testlist01\.txt:\d+: video .* not found'):
        datasets.build_dataset(other, {**_sources(data), 'splits_dir': splits_dir})
    assert not os.path.exists(other.data_dir)


def _build_command(data, sources, *flags):
    return [sys.executable, '-m', 'r3d_jax.data.build', '--dataset=ucf101',
            *(f'--{flag}={path}' for flag, path in sources.items()),
            f'--data_dir={data.data_dir}', f'--frame_short_side={data.frame_short_side}', *flags]


def _group_is_gone(pgid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_build_leaves_no_process_and_its_rerun_reuses_the_decoded_chunks(
    built, tmp_path, capsys
):
    data, complete = built
    other = _data_config(tmp_path)
    cache_dir = f'{datasets.dataset_dir(other)}.partial'
    log = tmp_path / 'build.log'
    with open(log, 'w') as stderr:
        build = subprocess.Popen(
            _build_command(other, _sources(data), '--workers=2', '--chunk_size=1'),
            stderr=stderr, stdout=subprocess.DEVNULL, start_new_session=True, cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 120
        # Kill the build's own process (not its workers) once two chunks are complete.
        while not (os.path.isdir(cache_dir) and
                   len([n for n in os.listdir(cache_dir) if n.endswith('.chunk')]) >= 2):
            assert build.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        build.send_signal(signal.SIGKILL)
        build.wait()
        assert _group_is_gone(build.pid, seconds=5), 'a decoding process outlived the build'
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(build.pid, signal.SIGKILL)  # Whatever is left, if the test failed.
    assert not datasets.is_built(datasets.dataset_dir(other))
    finished = len([n for n in os.listdir(cache_dir) if n.endswith('.chunk')])
    capsys.readouterr()

    datasets.build_dataset(other, _sources(data), workers=2, chunk_size=1)
    assert f'train: reusing {finished} of 8 decoded chunks' in capsys.readouterr().err
    assert not os.path.exists(cache_dir)
    assert_same_examples(datasets.dataset_dir(other), complete)


def test_build_command_errors_are_one_line_without_a_traceback(built, tmp_path):
    data, _ = built
    other = _data_config(tmp_path)
    result = subprocess.run(
        _build_command(other, {**_sources(data), 'train_csv': 'train.csv'}),
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: --dataset=ucf101 does not read --train_csv; it reads --videos_dir, --splits_dir.'
    )
    assert 'Traceback' not in result.stderr
