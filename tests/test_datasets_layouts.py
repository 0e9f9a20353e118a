"""Building each layout end to end: what it stores, and how it treats missing or broken files."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from r3d_jax import defaults
from r3d_jax.data import datasets, frames_builder, video_decoding
from r3d_jax.data.synthetic import render


def _data(root, dataset, **overrides):
    data = defaults.get_config().data
    data.dataset = dataset
    data.data_dir = os.path.join(root, 'tfds')
    data.raw_dir = os.path.join(root, 'raw')
    data.frame_short_side = 32
    data.build_workers = 2
    data.update(overrides)
    return data


def _examples(data, split):
    builder = datasets.load_builder(data)
    dataset = builder.as_dataset(split=split, decoders={'frames': tfds.decode.SkipDecoding()})
    return {e['video_id'].decode(): e for e in tfds.as_numpy(dataset)}


def _frame_shape(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg))).shape


def _write(path, num_frames, size=(160, 120), fps=25, codec=render.H264_MP4, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = render.render_frames(render.motion_classes()[seed % 3], num_frames, (seed,), size)
    render.write_video(path, frames, fps, codec)


# ---------------------------------------------------------------------------------------------
# HMDB-51, from the synthetic tree in its exact layout.


def test_hmdb51_stores_each_splits_train_and_test_ids_with_codec_and_rate_from_the_files(
    tmp_path,
):
    data = _data(str(tmp_path), 'hmdb51', if_missing='synthetic', eval_split='test')
    data.synthetic.update(num_classes=2, num_groups=6, clips_per_group=2, min_frames=4,
                          max_frames=6)
    directory = datasets.ensure_dataset(data)
    assert directory.endswith('hmdb51_frames/split1_32px/1.0.0')
    splits_dir = os.path.join(data.raw_dir, 'testTrainMulti_7030_splits')
    builder = datasets.load_builder(data)
    class_names = builder.info.features['label'].names
    assert class_names == sorted(class_names) and len(class_names) == 2
    for split, wanted in (('train', '1'), ('test', '2')):
        expected = {}
        for class_name in class_names:
            with open(os.path.join(splits_dir, f'{class_name}_test_split1.txt')) as f:
                for line in f:
                    name, split_id = line.rsplit(None, 1)
                    if split_id == wanted:
                        expected[f'{class_name}/{os.path.splitext(name)[0]}'] = class_name
        stored = _examples(data, split)
        assert {k: v['class_name'].decode() for k, v in stored.items()} == expected
        assert all(e['fps'] == 30.0 for e in stored.values())
        report = builder.info.metadata['build']['splits'][split]
        assert report['codecs'] == {'mpeg4': len(expected)}
    assert any(set(video_id) & set("()[]&;'!#") for video_id in _examples(data, 'train'))


# ---------------------------------------------------------------------------------------------
# A user's own videos.


def test_a_video_list_stores_any_codec_and_size_with_the_short_side_asked(tmp_path):
    videos = tmp_path / 'videos'
    _write(str(videos / 'walk' / 'wide one.mp4'), 6, (320, 180), fps=30, seed=0)
    _write(str(videos / 'walk' / 'portrait.mp4'), 5, (180, 320), fps=24, seed=1)
    _write(str(videos / 'run' / 'r.webm'), 7, (256, 256), codec=render.VP9_WEBM, seed=2)
    _write(str(videos / 'run' / 's.avi'), 4, codec=render.XVID_AVI, seed=3)
    lists = tmp_path / 'lists'
    lists.mkdir()
    (lists / 'classes.txt').write_text('walk\nrun\n')
    (lists / 'train.txt').write_text('walk/wide one.mp4 walk\nrun/r.webm 1\n')
    (lists / 'test.txt').write_text('walk/portrait.mp4 0\nrun/s.avi run\n')
    data = _data(str(tmp_path), 'video_list', video_list_name='clips')
    directory = datasets.build_dataset(
        data, {'videos_dir': str(videos), 'splits_dir': str(lists)}, workers=2
    )
    assert directory.endswith('video_list_frames/clips_32px/1.0.0')
    train, test = _examples(data, 'train'), _examples(data, 'test')
    assert {k: int(v['label']) for k, v in {**train, **test}.items()} == {
        'walk/wide one': 0, 'run/r': 1, 'walk/portrait': 0, 'run/s': 1
    }
    assert _frame_shape(train['walk/wide one']['frames'][0]) == (32, 57, 3)
    assert _frame_shape(test['walk/portrait']['frames'][0]) == (57, 32, 3)  # Width is short.
    assert [test['walk/portrait']['fps'], train['run/r']['num_frames']] == [24.0, 7]
    codecs = datasets.load_builder(data).info.metadata['build']['splits']
    assert codecs['train']['codecs'] == {'h264': 1, 'vp9': 1}
    assert codecs['test']['codecs'] == {'h264': 1, 'mpeg4': 1}


# ---------------------------------------------------------------------------------------------
# Kinetics: missing and broken clips are normal.


@pytest.fixture(scope='module')
def kinetics_tree(tmp_path_factory):
    """Flat clips of 3 labels: 10 training rows (1 clip missing, 1 corrupt), 3 validation rows."""
    root = tmp_path_factory.mktemp('kinetics')
    labels = ['abseiling', 'air drumming', "passing American football (in game)"]
    train = [(labels[i % 3], f'{"-" if i == 0 else "t"}rainClip{i:02d}', 10 * i, 10 * i + 10)
             for i in range(10)]
    val = [(labels[i], f'valClip{i:04d}', 0, 10) for i in range(3)]
    for label, youtube_id, start, end in train + val:
        if youtube_id == 'trainClip05':
            continue  # Never downloaded.
        path = str(root / 'clips' / f'{youtube_id}_{start:06d}_{end:06d}.mp4')
        _write(path, 5, (96, 72), seed=labels.index(label))
        if youtube_id == 'trainClip06':
            with open(path, 'r+b') as f:
                f.truncate(os.path.getsize(path) // 2)
    for name, rows in (('train.csv', train), ('validate.csv', val)):
        with open(root / name, 'w') as f:
            f.write('label,youtube_id,time_start,time_end,split\n')
            f.writelines(f'"{label}",{yid},{start},{end},x\n' for label, yid, start, end in rows)
    return {'videos_dir': str(root / 'clips'), 'train_csv': str(root / 'train.csv'),
            'val_csv': str(root / 'validate.csv')}


def test_kinetics_skips_and_records_missing_and_corrupt_clips_below_the_threshold(
    kinetics_tree, tmp_path, capsys
):
    data = _data(str(tmp_path), 'kinetics', eval_split='validation')
    datasets.build_dataset(data, kinetics_tree, workers=2)
    # 2 of 10 is the layout's default threshold, 0.2: at most this many may be skipped.
    assert 'train: 10 listed, 9 found, 8 decoded, 2 skipped (h264 8)' in capsys.readouterr().out
    train = _examples(data, 'train')
    assert len(train) == 8 and '-rainClip00_000000_000010' in train
    skipped = datasets.load_builder(data).info.metadata['skipped_videos']
    assert [(s['video_id'], s['reason'].split(':')[0]) for s in skipped] == [
        ('trainClip05_000050_000060', 'missing'), ('trainClip06_000060_000070', 'cannot be decoded')
    ]
    assert skipped[0]['source'] == f'{kinetics_tree["train_csv"]}:7'
    assert len(_examples(data, 'validation')) == 3


def test_kinetics_above_the_threshold_fails_naming_what_was_skipped(kinetics_tree, tmp_path):
    data = _data(str(tmp_path), 'kinetics', max_skip_fraction=0.15)  # 2 of 10 is 0.2.
    with pytest.raises(frames_builder.SkippedVideosError) as failure:
        datasets.build_dataset(data, kinetics_tree, workers=2)
    message = str(failure.value)
    assert 'train 2 of 10; at most a fraction 0.15 may be' in message
    assert 'trainClip05_000050_000060: missing: no file trainClip05_000050_000060.*' in message
    assert not datasets.is_built(datasets.dataset_dir(data))


# ---------------------------------------------------------------------------------------------
# ActivityNet: one example per annotated segment.


def test_activitynet_stores_each_segments_frames_of_the_video(tmp_path):
    videos = tmp_path / 'videos'
    _write(str(videos / 'v_aaa.mp4'), 30, fps=10, seed=0)  # 3 s at 10 fps.
    _write(str(videos / 'v_bbb.mp4'), 12, fps=10, seed=1)
    taxonomy = [{'nodeId': 0, 'nodeName': 'Root', 'parentId': None},
                {'nodeId': 1, 'nodeName': 'Archery', 'parentId': 0},
                {'nodeId': 2, 'nodeName': 'Long jump', 'parentId': 0}]
    database = {
        # By hand (video_decoding.segment_frames): [1.25, 2.0] -> indices 12..18;
        # [0.0, 0.45] -> 0..3; [2.5, 9.0] -> 24..29 (the video ends at frame 29).
        'aaa': {'subset': 'training', 'annotations': [
            {'segment': [1.25, 2.0], 'label': 'Archery'},
            {'segment': [0.0, 0.45], 'label': 'Long jump'},
            {'segment': [2.5, 9.0], 'label': 'Archery'}]},
        'bbb': {'subset': 'validation', 'annotations': [
            {'segment': [0.2, 0.7], 'label': 'Long jump'},
            {'segment': [5.0, 6.0], 'label': 'Archery'}]},  # After its end: skipped.
        'ccc': {'subset': 'training', 'annotations': [  # Not downloaded: skipped.
            {'segment': [0.0, 1.0], 'label': 'Archery'}]},
    }
    annotations = tmp_path / 'activity_net.v1-3.min.json'
    annotations.write_text(json.dumps({'taxonomy': taxonomy, 'database': database}))
    data = _data(str(tmp_path), 'activitynet', max_skip_fraction=0.5, eval_split='validation')
    datasets.build_dataset(
        data, {'videos_dir': str(videos), 'annotations': str(annotations)}, workers=1
    )
    whole = video_decoding.decode_video(str(videos / 'v_aaa.mp4'), 32).frames
    train = _examples(data, 'train')
    assert sorted(train) == ['v_aaa/0', 'v_aaa/1', 'v_aaa/2']
    assert list(train['v_aaa/0']['frames']) == whole[12:19]
    assert list(train['v_aaa/1']['frames']) == whole[0:4]
    assert list(train['v_aaa/2']['frames']) == whole[24:30]
    assert [train[k]['label'] for k in sorted(train)] == [0, 1, 0]
    assert train['v_aaa/0']['fps'] == 10.0
    (validation,) = _examples(data, 'validation').values()
    assert validation['num_frames'] == 5  # [0.2, 0.7]: numbers 2..6, indices 1..5.
    reasons = {s['video_id']: s['reason']
               for s in datasets.load_builder(data).info.metadata['skipped_videos']}
    assert reasons['v_ccc/0'].startswith('missing: no file v_ccc.*')
    assert reasons['v_bbb/1'] == ('segment [5.0, 6.0] s starts after the end of the video '
                                  '(12 frames at 10 fps)')


# ---------------------------------------------------------------------------------------------
# Every synthetic tree, generated and built by `ensure_dataset` as the trainer calls it.


@pytest.mark.parametrize(
    ('dataset', 'variant', 'eval_split'),
    [
        ('ucf101', '', 'test'),
        ('hmdb51', '', 'test'),
        ('video_list', '', 'test'),
        ('video_list', 'with_val', 'val'),
        ('video_list', 'split_folders', 'test'),
        ('kinetics', '', 'validation'),
        ('kinetics', 'underscore_folders', 'validation'),
        ('kinetics', 'flat', 'validation'),
        ('activitynet', '', 'validation'),
    ],
)
def test_ensure_dataset_generates_and_builds_every_synthetic_layout(
    tmp_path, dataset, variant, eval_split
):
    data = _data(str(tmp_path), dataset, if_missing='synthetic', eval_split=eval_split,
                 frame_short_side=16, max_skip_fraction=0.5)
    data.synthetic.update(num_classes=2, num_groups=5, clips_per_group=2, min_frames=4,
                          max_frames=6, variant=variant)
    directory = datasets.ensure_dataset(data)
    assert directory == datasets.dataset_dir(data)
    builder = datasets.load_builder(data)
    reports = builder.info.metadata['build']['splits']
    skipped = builder.info.metadata['skipped_videos']
    for split, report in reports.items():
        assert builder.info.splits[split].num_examples == report['decoded'] > 0
        assert report['listed'] - report['decoded'] == sum(s['split'] == split for s in skipped)
    downloaded = dataset in ('kinetics', 'activitynet')  # Their trees lack or break some files.
    assert bool(skipped) == downloaded
    assert all(s['reason'].startswith('missing') for s in skipped if not s['path'])
