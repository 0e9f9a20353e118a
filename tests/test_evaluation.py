"""Evaluation: hand-checked clip and video accuracies, batching, devices, reports, CLI errors."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from r3d_jax import checkpoints, defaults, evaluation
from r3d_jax.data import build_ucf101, input_pipeline
from r3d_jax.models import create_model, expected_variables, init_variables

# Four videos of 40, 10, 33 and 16 frames: 3, 1, 3 and 1 non-overlapping 16-frame clips (the
# last clip of a video looped to length). Six classes; each clip's softmax is given directly.
VIDEO_FRAMES = (40, 10, 33, 16)
VIDEO_LABELS = (2, 1, 1, 4)
CLIP_PROBABILITIES = np.array(
    [
        # Video 0 (class 2): two of three clips right, but the average picks class 0.
        [0.70, 0.05, 0.10, 0.05, 0.05, 0.05],
        [0.20, 0.05, 0.40, 0.15, 0.10, 0.10],
        [0.20, 0.05, 0.40, 0.25, 0.05, 0.05],
        # Video 1 (class 1): one clip, right.
        [0.10, 0.60, 0.10, 0.10, 0.05, 0.05],
        # Video 2 (class 1): two of three clips wrong, but the average picks class 1.
        [0.05, 0.35, 0.05, 0.05, 0.05, 0.45],
        [0.05, 0.70, 0.05, 0.05, 0.05, 0.10],
        [0.05, 0.30, 0.05, 0.05, 0.05, 0.50],
        # Video 3 (class 4): one clip; class 4 is its lowest score, outside the top 5.
        [0.30, 0.25, 0.20, 0.10, 0.05, 0.10],
    ]
)
CLIPS_PER_VIDEO = [math.ceil(frames / 16) for frames in VIDEO_FRAMES]
CLIP_VIDEO_INDEX = np.repeat(np.arange(len(VIDEO_FRAMES)), CLIPS_PER_VIDEO)
CLIP_LABELS = np.array(VIDEO_LABELS)[CLIP_VIDEO_INDEX]
CLIP_LOSSES = -np.log(CLIP_PROBABILITIES[np.arange(8), CLIP_LABELS])

# Worked out by hand from the table above.
EXPECTED_VIDEO_SCORES = np.array(
    [
        [1.10 / 3, 0.05, 0.30, 0.15, 0.20 / 3, 0.20 / 3],
        [0.10, 0.60, 0.10, 0.10, 0.05, 0.05],
        [0.05, 0.45, 0.05, 0.05, 0.05, 0.35],
        [0.30, 0.25, 0.20, 0.10, 0.05, 0.10],
    ]
)
EXPECTED_CONFUSION = np.zeros((6, 6), np.int64)
EXPECTED_CONFUSION[2, 0] = 1  # Video 0.
EXPECTED_CONFUSION[1, 1] = 2  # Videos 1 and 2.
EXPECTED_CONFUSION[4, 0] = 1  # Video 3.


def batched(batch_size, devices, order):
    """The clips in `order`, cut into [devices, batch_size // devices] batches padded at the end.

    Padding clips carry garbage: a confident wrong score for video 0, which must not count.
    """
    per_device = batch_size // devices
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        padding = batch_size - len(chosen)
        probabilities = np.concatenate(
            [CLIP_PROBABILITIES[chosen], np.tile(np.eye(6)[5], (padding, 1))]
        )
        yield {
            'probabilities': probabilities.reshape(devices, per_device, 6),
            'losses': np.concatenate([CLIP_LOSSES[chosen], np.full(padding, 99.0)]).reshape(
                devices, per_device
            ),
            'labels': np.concatenate([CLIP_LABELS[chosen], np.full(padding, 3)]).reshape(
                devices, per_device
            ),
            'video_index': np.concatenate(
                [CLIP_VIDEO_INDEX[chosen], np.zeros(padding, int)]
            ).reshape(devices, per_device),
            'mask': np.concatenate([np.ones(len(chosen), bool), np.zeros(padding, bool)]).reshape(
                devices, per_device
            ),
        }


def summarize_batches(batches):
    totals = evaluation.ScoreTotals.zeros(len(VIDEO_FRAMES), 6)
    for batch in batches:
        totals.add(**batch)
    return totals, evaluation.summarize(totals, 'video')


@pytest.mark.parametrize(
    ('batch_size', 'devices'), [(1, 1), (2, 2), (3, 1), (4, 4), (5, 1), (8, 2), (12, 4)]
)
def test_video_scores_average_clip_softmax_whatever_the_batching(batch_size, devices):
    totals, result = summarize_batches(batched(batch_size, devices, np.arange(8)))

    np.testing.assert_allclose(
        totals.score_sums / totals.clip_counts[:, None], EXPECTED_VIDEO_SCORES, atol=1e-12
    )
    np.testing.assert_array_equal(totals.clip_counts, CLIPS_PER_VIDEO)
    assert (result.num_videos, result.num_clips) == (4, 8)
    assert result.video_top1 == pytest.approx(2 / 4)
    assert result.video_top5 == pytest.approx(3 / 4)
    assert result.clip_top1 == pytest.approx(4 / 8)
    assert result.clip_top5 == pytest.approx(7 / 8)
    assert result.clip_loss == pytest.approx(
        -np.log([0.10, 0.40, 0.40, 0.60, 0.35, 0.70, 0.30, 0.05]).mean()
    )


def test_video_scores_do_not_depend_on_clip_order():
    shuffled = np.random.default_rng(0).permutation(8)
    _, in_order = summarize_batches(batched(3, 1, np.arange(8)))
    _, out_of_order = summarize_batches(batched(3, 1, shuffled))

    assert in_order.scalars() == pytest.approx(out_of_order.scalars())
    np.testing.assert_array_equal(in_order.confusion_matrix, out_of_order.confusion_matrix)


def test_per_class_and_mean_class_accuracy_match_hand_computation():
    _, result = summarize_batches(batched(4, 2, np.arange(8)))

    np.testing.assert_array_equal(result.confusion_matrix, EXPECTED_CONFUSION)
    np.testing.assert_array_equal(
        result.per_class_accuracy, [np.nan, 1.0, 0.0, np.nan, 0.0, np.nan]
    )
    # Classes 1, 2 and 4 have videos: (1 + 0 + 0) / 3, unlike the video top-1 of 2 / 4.
    assert result.mean_class_accuracy == pytest.approx(1 / 3)


def test_softmax_of_log_probabilities_gives_them_back():
    np.testing.assert_allclose(
        evaluation.softmax(np.log(CLIP_PROBABILITIES) + 7.0), CLIP_PROBABILITIES, atol=1e-12
    )


def test_top_k_breaks_ties_towards_the_lower_class_like_argmax():
    uniform = np.full((2, 6), 1 / 6)

    np.testing.assert_array_equal(evaluation.top_k_hits(uniform, np.array([0, 1]), 1), [1, 0])
    np.testing.assert_array_equal(evaluation.top_k_hits(uniform, np.array([4, 5]), 5), [1, 0])


def test_a_video_without_clips_is_an_error_not_a_dropped_video():
    without_video_3 = np.arange(7)

    with pytest.raises(evaluation.EvaluationError, match=r'1 of 4 videos received no clip'):
        summarize_batches(batched(4, 1, without_video_3))


def test_clips_of_one_video_with_different_labels_are_refused():
    totals = evaluation.ScoreTotals.zeros(2, 6)
    batch = next(batched(2, 1, np.arange(2)))
    batch['labels'] = np.array([[2, 3]])

    with pytest.raises(evaluation.EvaluationError, match='video 0'):
        totals.add(**batch)


def test_labels_beyond_the_model_classes_are_refused():
    totals = evaluation.ScoreTotals.zeros(4, 6)
    batch = next(batched(2, 1, np.arange(2)))
    batch['labels'] = np.array([[6, 6]])

    with pytest.raises(evaluation.EvaluationError, match='num_classes'):
        totals.add(**batch)


def test_report_writes_json_png_and_a_table_naming_every_class(tmp_path):
    _, result = summarize_batches(batched(8, 1, np.arange(8)))
    names = ['Archery', 'Basketball', 'Biking', 'Diving', 'Fencing', 'Rowing']

    evaluation.write_report(result, workdir=str(tmp_path), class_names=names, step=7)
    table = evaluation.format_table(result, names)

    report = json.loads((tmp_path / 'eval_video.json').read_text())
    assert report['step'] == 7
    assert report['video_top1'] == pytest.approx(0.5)
    assert report['per_class'][1] == {'class': 'Basketball', 'videos': 2, 'accuracy': 1.0}
    assert report['per_class'][0]['accuracy'] is None
    assert report['confusion_matrix'] == EXPECTED_CONFUSION.tolist()
    assert (tmp_path / 'confusion_video.png').read_bytes().startswith(b'\x89PNG')
    assert not list(tmp_path.glob('*.tmp'))
    assert all(name in table for name in names)
    assert 'video top1' in table and '50.00%' in table


# ---------------------------------------------------------------------------------------------
# evaluate() and evaluate_checkpoint() on a tiny built dataset: a ResNet-10 on 4x16x16 clips of
# a 3-class synthetic UCF-101 whose 9 test videos have 5 to 40 frames.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CLASSES = 3


def tiny_config(data_root, eval_batch_size=12):
    config = defaults.get_config()
    config.data.data_dir = os.path.join(data_root, 'tfds')
    config.data.raw_dir = os.path.join(data_root, 'raw')
    config.data.if_missing = 'synthetic'
    config.data.frame_short_side = 32
    config.data.build_workers = 1
    config.data.synthetic.update(
        num_classes=TINY_CLASSES, num_groups=4, clips_per_group=3, min_frames=5, max_frames=40
    )
    config.input.update(clip_length=4, crop_size=16, eval_clips_per_video=2)
    config.model.update(depth=10, num_classes=TINY_CLASSES, stem_temporal_kernel=3, dtype='float32')
    config.eval_batch_size = eval_batch_size
    return config


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """The tiny synthetic dataset, generated and built once for the module."""
    root = str(tmp_path_factory.mktemp('tiny_data'))
    build_ucf101.ensure_dataset(tiny_config(root).data)
    return root


@pytest.fixture(scope='module')
def tiny_model():
    model = create_model(tiny_config('unused'))
    return model, init_variables(model, jax.random.key(1), (1, 4, 16, 16, 3))


def split_frame_counts(config):
    builder = input_pipeline.load_builder(config)
    decoders = tfds.decode.PartialDecoding({'num_frames': True})
    dataset = builder.as_dataset(split=config.data.eval_split, decoders=decoders)
    return np.array([int(x['num_frames']) for x in dataset.as_numpy_iterator()])


def one_device_scores(config, model, variables, mode):
    """Per-clip softmax on one device, summed per video in a dict; (scores, labels, losses)."""
    apply = jax.jit(lambda clips: jax.nn.softmax(model.apply(variables, clips, train=False)))
    sums, counts, labels, losses = {}, {}, {}, []
    config = config.copy_and_resolve_references()
    config.eval_batch_size = 8
    for batch in input_pipeline.create_eval_iterator(config, mode=mode, local_device_count=1):
        probabilities = np.asarray(apply(batch['clips'][0]), np.float64)
        for p, label, video, keep in zip(
            probabilities,
            batch['labels'][0],
            batch['video_index'][0],
            batch['mask'][0],
            strict=True,
        ):
            if keep:
                sums[video] = sums.get(video, 0.0) + p
                counts[video] = counts.get(video, 0) + 1
                labels[video] = label
                losses.append(-np.log(p[label]))
    videos = sorted(sums)
    scores = np.array([sums[v] / counts[v] for v in videos])
    return scores, np.array([labels[v] for v in videos]), np.array(losses)


@pytest.mark.parametrize(('mode', 'spatial_crops'), [('video', 1), ('clip', 3)])
def test_evaluate_on_four_devices_equals_one_device_and_drops_nothing(
    data_root, tiny_model, mode, spatial_crops
):
    config = tiny_config(data_root)
    config.input.eval_spatial_crops = spatial_crops
    model, variables = tiny_model
    assert jax.local_device_count() == 4

    result = evaluation.evaluate(config, model, variables, mode=mode)

    scores, labels, losses = one_device_scores(config, model, variables, mode)
    frames = split_frame_counts(config)
    clips_per_video = np.ceil(frames / 4) if mode == 'video' else np.full(len(frames), 2)
    assert result.num_videos == len(frames) == len(scores) == 9
    assert result.num_clips == len(losses) == int(clips_per_video.sum()) * spatial_crops
    assert result.clip_loss == pytest.approx(losses.mean(), rel=1e-5)
    assert result.video_top1 == pytest.approx(np.mean(scores.argmax(1) == labels))
    np.testing.assert_array_equal(
        result.confusion_matrix,
        evaluation.confusion_matrix(labels, scores.argmax(1), TINY_CLASSES),
    )


def test_evaluate_accepts_variables_stacked_per_device(data_root, tiny_model):
    config = tiny_config(data_root)
    model, variables = tiny_model
    stacked = jax.tree.map(lambda x: np.stack([x] * jax.local_device_count()), variables)

    plain = evaluation.evaluate(config, model, variables, mode='clip')
    replicated = evaluation.evaluate(config, model, stacked, mode='clip')

    assert replicated.scalars() == pytest.approx(plain.scalars())


def test_evaluate_refuses_an_empty_test_split(data_root, tiny_model, monkeypatch):
    config = tiny_config(data_root)
    monkeypatch.setattr(
        input_pipeline,
        'dataset_metadata',
        lambda config: input_pipeline.DatasetMetadata(['a', 'b', 'c'], {'train': 27, 'test': 0}),
    )

    with pytest.raises(evaluation.EvaluationError, match=r"'test' split in .*tfds holds no videos"):
        evaluation.evaluate(config, *tiny_model, mode='video')


def save_tiny_checkpoint(directory, variables, config, class_names):
    checkpoints.save_variables(
        directory,
        variables,
        {
            'model': config.model.to_dict(),
            'input': config.input.to_dict(),
            'class_names': class_names,
            'step': 42,
        },
    )


def test_evaluate_checkpoint_writes_table_json_png_and_tensorboard(
    data_root, tiny_model, tmp_path, capsys
):
    config = tiny_config(data_root)
    class_names = input_pipeline.dataset_metadata(config).class_names
    checkpoint = str(tmp_path / 'imported')
    save_tiny_checkpoint(checkpoint, tiny_model[1], config, class_names)
    workdir = tmp_path / 'workdir'

    results = evaluation.evaluate_checkpoint(
        config, str(workdir), checkpoint=checkpoint, modes=('video',)
    )

    report = json.loads((workdir / 'eval_video.json').read_text())
    assert report['checkpoint'] == checkpoint
    assert report['step'] == 42
    assert report['num_videos'] == 9
    assert report['video_top1'] == pytest.approx(results['video'].video_top1)
    assert [entry['class'] for entry in report['per_class']] == class_names
    assert (workdir / 'confusion_video.png').read_bytes().startswith(b'\x89PNG')
    assert list(workdir.glob('events.out.tfevents.*'))
    table = capsys.readouterr().out
    assert 'video top1' in table and all(name in table for name in class_names)


def test_checkpoint_for_another_model_is_refused_naming_the_parameter(tmp_path, data_root):
    config = tiny_config(data_root)
    other = tiny_config(data_root)
    other.model.num_classes = 5
    shapes = expected_variables(create_model(other), (1, 4, 16, 16, 3))
    checkpoint = str(tmp_path / 'five_classes')
    save_tiny_checkpoint(
        checkpoint, jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes), other, None
    )

    with pytest.raises(
        checkpoints.CheckpointError,
        match=r'five_classes: .*parameter params/fc/kernel has shape \(512, 5\) but the model '
        r'expects \(512, 3\)',
    ):
        evaluation.evaluate_checkpoint(config, str(tmp_path), checkpoint=checkpoint)


def test_checkpoint_trained_on_other_classes_is_refused(data_root, tiny_model, tmp_path):
    config = tiny_config(data_root)
    checkpoint = str(tmp_path / 'other_classes')
    save_tiny_checkpoint(checkpoint, tiny_model[1], config, ['x', 'y', 'z'])

    with pytest.raises(checkpoints.CheckpointError, match='other classes'):
        evaluation.evaluate_checkpoint(config, str(tmp_path), checkpoint=checkpoint)


def test_eval_cli_reports_a_missing_checkpoint_by_path(tmp_path):
    config_file = tmp_path / 'tiny_config.py'
    config_file.write_text('from r3d_jax.defaults import get_config  # noqa: F401\n')
    missing = tmp_path / 'no_such_checkpoint'

    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, 'eval.py'),
            f'--config={config_file}',
            f'--workdir={tmp_path}',
            f'--checkpoint={missing}',
        ],
        env={
            **os.environ,
            'JAX_PLATFORMS': 'cpu',
            'PYTHONPATH': REPO,
            'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
        },
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 1
    assert f'error: {missing} is not an r3d-jax checkpoint directory' in completed.stderr
