"""Train, evaluate and predict end to end on layouts other than UCF-101, at tiny size.

A ResNet-10 on 4x16x16 clips, as in tests/test_training.py: on the synthetic HMDB-51 (built by
`ensure_dataset` from its exact layout) and on a user's video list of MP4, WebM and AVI files of
several sizes and frame rates.
"""

import json
import os

import pytest

from r3d_jax import checkpoints, defaults, evaluation, predict, training
from r3d_jax.data import datasets
from r3d_jax.data.synthetic import render


def tiny_config(root, dataset, num_classes):
    config = defaults.get_config()
    config.data.dataset = dataset
    config.data.data_dir = os.path.join(root, 'tfds')
    config.data.raw_dir = os.path.join(root, 'raw')
    config.data.frame_short_side = 32
    config.data.build_workers = 1
    config.input.update(clip_length=4, crop_size=16, shuffle_buffer=16, eval_clips_per_video=1)
    config.model.update(depth=10, num_classes=num_classes, stem_temporal_kernel=3,
                        dtype='float32')
    config.optimizer.learning_rate = 0.01
    config.schedule.name = 'constant'
    config.eval_every_epochs = 0  # The evaluation is the checkpoint's, as eval.py runs it.
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_epochs = 1
    config.log_every_steps = 1
    config.checkpoint_every_steps = 0
    config.video_eval_at_end = False
    return config


def _run(config, workdir):
    """Trains, evaluates the latest checkpoint and predicts one test video with it."""
    training.train_and_evaluate(config, workdir)
    results = evaluation.evaluate_checkpoint(config, workdir, modes=('video',))
    checkpoint = checkpoints.find_checkpoint(workdir, 'latest')
    return results['video'], predict.load_classifier(checkpoint)


def _check(config, workdir, result, classifier, video):
    class_names = datasets.load_builder(config.data).info.features['label'].names
    test_videos = datasets.load_builder(config.data).info.splits[config.data.eval_split]
    with open(os.path.join(workdir, 'eval_video.json')) as f:
        report = json.load(f)
    assert report['num_videos'] == test_videos.num_examples == result.num_videos
    assert classifier.class_names == list(class_names)
    assert classifier.config.data.frame_short_side == 32
    prediction = predict.predict_video(classifier, video, top_k=2)
    assert prediction.top_classes[0][0] in class_names


def test_hmdb51_trains_evaluates_and_predicts(tmp_path):
    config = tiny_config(str(tmp_path), 'hmdb51', num_classes=2)
    config.data.if_missing = 'synthetic'
    config.data.synthetic.update(num_classes=2, num_groups=6, clips_per_group=2, min_frames=6,
                                 max_frames=8)
    workdir = str(tmp_path / 'workdir')
    result, classifier = _run(config, workdir)
    videos_dir = os.path.join(config.data.raw_dir, 'hmdb51_org')
    class_folder = os.path.join(videos_dir, sorted(os.listdir(videos_dir))[0])
    video = os.path.join(class_folder, sorted(os.listdir(class_folder))[0])
    _check(config, workdir, result, classifier, video)


@pytest.fixture
def video_list(tmp_path):
    """Three classes of four videos each, in three containers, sizes and frame rates."""
    videos = tmp_path / 'videos'
    formats = [((160, 120), 25, render.H264_MP4, 'mp4'), ((90, 160), 30, render.H264_MP4, 'mp4'),
               ((128, 128), 24, render.VP9_WEBM, 'webm'), ((160, 120), 25, render.XVID_AVI, 'avi')]
    lines = {'train.txt': [], 'test.txt': []}
    for label, motion in enumerate(render.motion_classes()[:3]):
        (videos / motion.name).mkdir(parents=True)
        for i, (size, fps, codec, extension) in enumerate(formats):
            relative = f'{motion.name}/clip {i}.{extension}'
            frames = render.render_frames(motion, 8, (label, i), size)
            render.write_video(str(videos / relative), frames, fps, codec)
            lines['test.txt' if i == 3 else 'train.txt'].append(f'{relative} {motion.name}\n')
    lists = tmp_path / 'lists'
    lists.mkdir()
    for name, text in lines.items():
        (lists / name).write_text(''.join(text))
    return {'videos_dir': str(videos), 'splits_dir': str(lists)}


def test_a_video_list_trains_evaluates_and_predicts(tmp_path, video_list):
    config = tiny_config(str(tmp_path), 'video_list', num_classes=3)
    config.data.video_list_name = 'three_motions'
    datasets.build_dataset(config.data, video_list, workers=1)
    workdir = str(tmp_path / 'workdir')
    result, classifier = _run(config, workdir)
    assert result.confusion_matrix.sum(axis=1).tolist() == [1, 1, 1]  # A test video per class.
    video = os.path.join(video_list['videos_dir'], classifier.class_names[0], 'clip 1.mp4')
    _check(config, workdir, result, classifier, video)
