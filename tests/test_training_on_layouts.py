"""Train, evaluate and predict end to end on layouts other than UCF-101, at tiny size.

A ResNet-10 on 4x16x16 clips, as in tests/test_training.py, on synthetic trees that
`ensure_dataset` generates and builds: HMDB-51 in its exact layout, and a user's video list of
MP4s of several sizes and frame rates (a portrait one among them), labelled by name and index.
"""

import json
import os

from r3d_jax import checkpoints, defaults, evaluation, predict, training
from r3d_jax.data import datasets


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


def test_a_video_list_trains_evaluates_and_predicts(tmp_path):
    config = tiny_config(str(tmp_path), 'video_list', num_classes=3)
    config.data.video_list_name = 'three_motions'
    config.data.if_missing = 'synthetic'
    config.data.synthetic.update(num_classes=3, num_groups=4, clips_per_group=1, min_frames=6,
                                 max_frames=8)
    workdir = str(tmp_path / 'workdir')
    result, classifier = _run(config, workdir)
    assert result.confusion_matrix.sum(axis=1).tolist() == [1, 1, 1]  # A test video per class.
    videos_dir = os.path.join(config.data.raw_dir, 'videos')
    class_folder = os.path.join(videos_dir, classifier.class_names[0])
    video = os.path.join(class_folder, sorted(os.listdir(class_folder))[0])
    _check(config, workdir, result, classifier, video)
