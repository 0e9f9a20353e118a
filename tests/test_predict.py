"""Prediction on video files with a model trained by the training loop, and its errors.

The demo model is a ResNet-10 trained for a few steps on three classes that a single frame
tells apart (the dominant colour), so that a brief CPU run learns them; the test videos are
new AVI (MPEG-4 Part 2) and MP4 (H.264) files the model has never seen.
"""

import json
import os
import subprocess
import sys

import av
import jax
import numpy as np
import pytest

from r3d_jax import checkpoints, defaults, evaluation, predict, training
from r3d_jax.data import build_ucf101, synthetic
from r3d_jax.models import create_model, expected_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = {'RedScene': (210, 40, 40), 'GreenScene': (40, 210, 40), 'BlueScene': (40, 40, 210)}
TRAIN_GROUPS, TEST_GROUP = (1, 2, 3, 4), 5


def colour_frames(colour, num_frames, seed):
    """uint8 [T, 48, 64, 3]: a noisy scene of one dominant colour with a drifting grey square."""
    rng = np.random.default_rng(seed)
    frames = np.array(colour) + rng.normal(0.0, 30.0, (num_frames, 48, 64, 3))
    for t in range(num_frames):
        left = (3 * t + int(rng.integers(64))) % 48
        frames[t, 16:32, left : left + 16] = 128
    return np.clip(frames, 0, 255).astype(np.uint8)


def write_mp4(path, frames):
    with av.open(path, mode='w', format='mp4') as container:
        stream = container.add_stream('libx264', rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format='rgb24')))
        container.mux(stream.encode())


def write_colour_tree(root):
    """A UCF-101-format tree: 3 classes x 4 training groups, 1 test group, 6-20 frames."""
    videos, splits = os.path.join(root, 'UCF-101'), os.path.join(root, 'ucfTrainTestlist')
    os.makedirs(splits)
    train_lines, test_lines = [], []
    for label, (name, colour) in enumerate(COLOURS.items()):
        os.makedirs(os.path.join(videos, name))
        for group in (*TRAIN_GROUPS, TEST_GROUP):
            relative = f'{name}/v_{name}_g{group:02d}_c01.avi'
            frames = colour_frames(colour, 6 + 3 * group, seed=(label, group))
            synthetic.write_avi(os.path.join(videos, relative), frames)
            if group == TEST_GROUP:
                test_lines.append(f'{relative}\n')
            else:
                train_lines.append(f'{relative} {label + 1}\n')
    with open(os.path.join(splits, 'classInd.txt'), 'w') as file:
        file.writelines(f'{i + 1} {name}\n' for i, name in enumerate(COLOURS))
    with open(os.path.join(splits, 'trainlist01.txt'), 'w') as file:
        file.writelines(train_lines)
    with open(os.path.join(splits, 'testlist01.txt'), 'w') as file:
        file.writelines(test_lines)
    return videos, splits


def demo_config(data_dir):
    config = defaults.get_config()
    config.data.data_dir = data_dir
    config.data.frame_short_side = 32
    config.input.update(
        clip_length=4, crop_size=16, flip_probability=0.0, shuffle_buffer=16, eval_clips_per_video=1
    )
    config.model.update(
        depth=10, num_classes=3, stem_temporal_kernel=3, dtype='float32', bn_momentum=0.5
    )
    config.optimizer.update(name='adamw', learning_rate=1e-3, weight_decay=0.0)
    config.schedule.name = 'constant'
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_epochs = 6
    config.log_every_steps = 3
    config.eval_every_epochs = 0
    config.checkpoint_every_steps = 0
    config.video_eval_at_end = False
    return config


@pytest.fixture(scope='module')
def trained_checkpoint(tmp_path_factory):
    """The latest checkpoint of a brief training run on the three colour classes."""
    root = tmp_path_factory.mktemp('colours')
    videos, splits = write_colour_tree(str(root / 'raw'))
    build_ucf101.build_dataset(videos, splits, str(root / 'tfds'), frame_short_side=32, workers=1)
    workdir = str(root / 'workdir')
    training.train_and_evaluate(demo_config(str(root / 'tfds')), workdir)
    return checkpoints.find_checkpoint(workdir, 'latest')


@pytest.fixture(scope='module')
def unseen_videos(tmp_path_factory):
    """A red AVI and a blue MP4 that the model has never seen."""
    directory = tmp_path_factory.mktemp('unseen')
    red = str(directory / 'red.avi')
    blue = str(directory / 'blue.mp4')
    synthetic.write_avi(red, colour_frames(COLOURS['RedScene'], 23, seed=(0, 99)))
    write_mp4(blue, colour_frames(COLOURS['BlueScene'], 11, seed=(2, 99)))
    return {'RedScene': red, 'BlueScene': blue}


def test_prediction_on_avi_and_mp4_files_finds_the_trained_class(trained_checkpoint, unseen_videos):
    classifier = predict.load_classifier(trained_checkpoint)

    for expected, path in unseen_videos.items():
        prediction = predict.predict_video(classifier, path, top_k=3)

        assert prediction.top_classes[0][0] == expected, prediction
        assert sum(p for _, p in prediction.top_classes) == pytest.approx(1.0, abs=1e-5)
    assert predict.predict_video(classifier, unseen_videos['RedScene']).num_clips == 6  # 23/4


def test_predict_cli_prints_classes_and_writes_json(trained_checkpoint, unseen_videos, tmp_path):
    json_out = tmp_path / 'predictions.json'

    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, 'predict.py'),
            f'--checkpoint={trained_checkpoint}',
            '--top_k=2',
            f'--json_out={json_out}',
            *unseen_videos.values(),
        ],
        env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr
    written = json.loads(json_out.read_text())
    assert [p['top_classes'][0]['class'] for p in written] == list(unseen_videos)
    assert all(len(p['top_classes']) == 2 for p in written)
    assert unseen_videos['BlueScene'] in completed.stdout and 'BlueScene' in completed.stdout


def test_clips_follow_the_evaluation_video_protocol(tmp_path):
    """23 frames at clip length 4: 6 clips, the last one looped; frames resized then cropped."""
    path = str(tmp_path / 'ramp.avi')
    frames = (
        np.zeros((23, 48, 64, 3), np.uint8) + np.arange(23, dtype=np.uint8)[:, None, None, None]
    )
    synthetic.write_avi(path, frames * 10)
    config = demo_config('unused')
    config = predict.classifier_config(
        {
            'model': config.model.to_dict(),
            'input': config.input.to_dict(),
            'data': {'frame_short_side': 32},
        },
        'test',
    )

    clips, num_frames = predict.video_clips(path, config)

    assert num_frames == 23
    assert clips.shape == (6, 4, 16, 16, 3) and clips.dtype == np.uint8
    brightness = clips.mean(axis=(2, 3, 4)) / 10
    np.testing.assert_allclose(brightness[0], [0, 1, 2, 3], atol=1.0)
    np.testing.assert_allclose(brightness[-1], [20, 21, 22, 20], atol=1.0)  # Looped.


def test_an_unreadable_video_is_an_error_naming_the_file(trained_checkpoint, tmp_path):
    classifier = predict.load_classifier(trained_checkpoint)
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'this is not a video' * 100)
    missing = tmp_path / 'missing.avi'

    for path in (broken, missing):
        with pytest.raises(predict.VideoReadError, match=f'Cannot read video {path}'):
            predict.predict_video(classifier, str(path))


def test_predict_cli_names_the_unreadable_file(trained_checkpoint, tmp_path):
    broken = tmp_path / 'broken.avi'
    broken.write_bytes(b'RIFF')

    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, 'predict.py'),
            f'--checkpoint={trained_checkpoint}',
            str(broken),
        ],
        env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 1
    assert f'error: Cannot read video {broken}' in completed.stderr


def test_a_checkpoint_whose_variables_do_not_fit_its_model_is_refused(tmp_path):
    """Variables of a shortcut-B model under metadata that says shortcut A (no projections)."""
    config = demo_config('unused')
    model = create_model(config)
    described = config.model.to_dict()
    described['shortcut'] = 'A'
    directory = str(tmp_path / 'mislabelled')
    checkpoints.save_variables(
        directory,
        jax.tree.map(
            lambda x: np.zeros(x.shape, x.dtype),
            expected_variables(model, evaluation.clip_shape(config)),
        ),
        {'model': described, 'input': config.input.to_dict(), 'class_names': None},
    )

    with pytest.raises(
        checkpoints.CheckpointError,
        match=f'{directory} holds parameters the model does not have: .*layer2_0/downsample',
    ):
        predict.load_classifier(directory)
