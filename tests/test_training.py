"""The training loop: data parallelism, exact resumption, signals, divergence, errors, events.

Everything runs a ResNet-10 on 4x16x16 clips of a tiny synthetic UCF-101 (4 classes, 16
training and 8 test videos) on the 4 forced CPU devices.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from r3d_jax import checkpoints, crop_resize, defaults, evaluation, optimizers, steps, training
from r3d_jax.data import datasets, input_pipeline
from r3d_jax.models import create_model, init_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_CONFIG = '''
"""A tiny run for tests: ResNet-10 on 4x16x16 clips of a 4-class synthetic UCF-101."""

from r3d_jax import defaults


def get_config():
    config = defaults.get_config()
    config.data.data_dir = {data_dir!r}
    config.data.raw_dir = {raw_dir!r}
    config.data.if_missing = 'synthetic'
    config.data.frame_short_side = 32
    config.data.synthetic.num_classes = 4
    config.data.synthetic.num_groups = 3
    config.data.synthetic.clips_per_group = 2
    config.data.synthetic.min_frames = 6
    config.data.synthetic.max_frames = 10
    config.data.build_workers = 1
    config.input.clip_length = 4
    config.input.crop_size = 16
    config.input.shuffle_buffer = 16
    config.input.eval_clips_per_video = 1
    config.model.depth = 10
    config.model.num_classes = 4
    config.model.stem_temporal_kernel = 3
    config.model.dtype = 'float32'
    config.optimizer.learning_rate = 0.01
    # No validation loss counts as an improvement, so the plateau halves the rate every epoch.
    config.schedule.plateau_patience = 0
    config.schedule.plateau_threshold = 1.0
    config.schedule.plateau_factor = 0.5
    config.batch_size = {batch_size}
    config.eval_batch_size = 8
    config.num_epochs = 2
    config.log_every_steps = 1
    config.checkpoint_every_steps = 1
    config.video_eval_at_end = False
    return config
'''


def write_tiny_config(directory: str, data_root: str, batch_size: int = 8) -> str:
    """A config file for the tiny run (data under `data_root`); returns its path."""
    path = os.path.join(directory, 'tiny_config.py')
    with open(path, 'w') as file:
        file.write(
            TINY_CONFIG.format(
                data_dir=os.path.join(data_root, 'tfds'),
                raw_dir=os.path.join(data_root, 'raw'),
                batch_size=batch_size,
            )
        )
    return path


def load_config(path: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location('tiny_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def subprocess_environment(num_devices: int) -> dict[str, str]:
    """JAX on the CPU with `num_devices` devices, as tests/conftest.py sets it up."""
    return {
        **os.environ,
        'JAX_PLATFORMS': 'cpu',
        'XLA_FLAGS': f'--xla_force_host_platform_device_count={num_devices}',
        'TF_CPP_MIN_LOG_LEVEL': '2',
        'CUDA_VISIBLE_DEVICES': '',
        'PYTHONPATH': REPO,
    }


def train_py_command(config_path: str, workdir: str, *flags: str) -> list[str]:
    """The command line that runs `train.py` on a config file in a workdir."""
    return [
        sys.executable,
        os.path.join(REPO, 'train.py'),
        f'--config={config_path}',
        f'--workdir={workdir}',
        *flags,
    ]


def read_final_checkpoint(workdir: str):
    """(variables, opt_state, metadata, loop_state) of the latest checkpoint, on the host."""
    import orbax.checkpoint as ocp

    manager = checkpoints.create_manager(workdir, keep=1, read_only=True)
    restored = manager.restore(
        manager.latest_step(),
        args=ocp.args.Composite(
            **{
                checkpoints.VARIABLES: ocp.args.StandardRestore(),
                checkpoints.OPT_STATE: ocp.args.StandardRestore(),
                checkpoints.METADATA: ocp.args.JsonRestore(),
                checkpoints.LOOP_STATE: ocp.args.JsonRestore(),
            }
        ),
    )
    manager.close()
    return (
        restored[checkpoints.VARIABLES],
        restored[checkpoints.OPT_STATE],
        dict(restored[checkpoints.METADATA]),
        dict(restored[checkpoints.LOOP_STATE]),
    )


@pytest.fixture(scope='module')
def tiny_config_path(tmp_path_factory):
    """The tiny config, its synthetic dataset generated and built once for the module."""
    root = tmp_path_factory.mktemp('tiny')
    path = write_tiny_config(str(root), str(root / 'data'))
    training.ensure_dataset(load_config(path))
    return path


@pytest.fixture
def tiny_config(tiny_config_path):
    return load_config(tiny_config_path)


@pytest.fixture(scope='module')
def straight_run(tiny_config_path, tmp_path_factory):
    """An uninterrupted run of 2 epochs (4 steps) with the final video and multi-view
    evaluations."""
    config = load_config(tiny_config_path)
    config.video_eval_at_end = True
    config.final_eval_modes = ('video', 'multiview')
    config.input.multiview_clips = 2
    workdir = str(tmp_path_factory.mktemp('straight'))
    training.train_and_evaluate(config, workdir)
    return workdir


# ---------------------------------------------------------------------------------------------
# The train step.


def _train_on_devices(config, initial_state, num_devices: int, num_steps: int):
    model = create_model(config, bn_axis_name=steps.AXIS)
    tx = optimizers.create_optimizer(config, steps_per_epoch=2)
    state = steps.replicate(initial_state, jax.local_devices()[:num_devices])
    p_train_step = steps.make_p_train_step(model, tx, crop_resize.CropResize.from_config(config))
    leading = (num_devices, config.batch_size // num_devices)
    for step in range(num_steps):
        batch = steps.random_train_batch(config, leading, np.random.default_rng(step))
        state, metrics = p_train_step(state, batch)
        assert bool(metrics['finite'])
    return jax.device_get(state)


def test_four_devices_and_one_device_reach_the_same_state(tiny_config):
    tiny_config.optimizer.learning_rate = 0.1
    initial = training.create_train_state(
        tiny_config,
        create_model(tiny_config, bn_axis_name=steps.AXIS),
        optimizers.create_optimizer(tiny_config, steps_per_epoch=2),
    )
    # Two steps: float32 rounding differs between the two reductions by ~1e-7, which later
    # flips a near-tie of the stem's max pool and moves a few gradient entries by ~1e-4.
    on_four = _train_on_devices(tiny_config, initial, num_devices=4, num_steps=2)
    on_one = _train_on_devices(tiny_config, initial, num_devices=1, num_steps=2)
    moved = jax.tree.map(lambda a, b: np.max(np.abs(a - b)), on_four.params, initial.params)
    assert max(jax.tree.leaves(moved)) > 1e-3  # The comparison below is not vacuous.
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=2e-4, atol=2e-5), on_four, on_one
    )


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tiny_config):
    tiny_config.batch_size = 6
    with pytest.raises(defaults.ConfigError, match=r'config.batch_size=6 must split evenly'):
        training.check_config(tiny_config)


def test_an_unknown_final_evaluation_protocol_is_refused(tiny_config):
    tiny_config.final_eval_modes = ('video', 'ten_crop')
    with pytest.raises(defaults.ConfigError, match=r"config.final_eval_modes .*'ten_crop'"):
        training.check_config(tiny_config)


def test_an_unknown_config_field_is_named_with_a_suggestion(tiny_config):
    with tiny_config.unlocked():
        tiny_config.bach_size = 4
    with pytest.raises(
        defaults.ConfigError, match=r'config.bach_size \(did you mean config.batch_size\?\)'
    ):
        training.train_and_evaluate(tiny_config, '/nonexistent')


def test_a_missing_dataset_names_the_directory_and_the_build_command(tiny_config, tmp_path):
    tiny_config.data.data_dir = str(tmp_path / 'empty')
    tiny_config.data.if_missing = ''
    with pytest.raises(datasets.DatasetNotBuiltError) as error:
        training.train_and_evaluate(tiny_config, str(tmp_path / 'workdir'))
    assert str(tmp_path / 'empty') in str(error.value)
    assert 'python -m r3d_jax.data.build --dataset=ucf101' in str(error.value)


def _save_other_model_variables(config, directory: str, num_classes: int) -> dict:
    """Random variables of `config`'s model with `num_classes` outputs, saved as init_from."""
    other = config.copy_and_resolve_references()
    other.model.num_classes = num_classes
    shapes = jax.eval_shape(
        lambda: init_variables(
            create_model(other), jax.random.key(1), evaluation.clip_shape(other)
        )
    )
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    checkpoints.save_variables(directory, variables, {'model': other.model.to_dict()})
    return variables


def test_init_from_loads_the_backbone_and_keeps_skipped_modules_fresh(tiny_config, tmp_path):
    saved = _save_other_model_variables(tiny_config, str(tmp_path / 'other'), num_classes=7)
    tiny_config.init_from = str(tmp_path / 'other')
    tiny_config.init_from_skip = ('fc',)
    model = create_model(tiny_config, bn_axis_name=steps.AXIS)
    variables = training.initial_variables(tiny_config, model, jax.random.key(0))
    np.testing.assert_array_equal(
        variables['params']['conv1']['kernel'], saved['params']['conv1']['kernel']
    )
    np.testing.assert_array_equal(
        variables['batch_stats']['layer4_0']['bn2']['var'],
        saved['batch_stats']['layer4_0']['bn2']['var'],
    )
    assert variables['params']['fc']['kernel'].shape == (512, 4)  # Fresh, for 4 classes.


def test_init_from_with_other_shapes_names_the_parameter(tiny_config, tmp_path):
    _save_other_model_variables(tiny_config, str(tmp_path / 'other'), num_classes=7)
    tiny_config.init_from = str(tmp_path / 'other')
    model = create_model(tiny_config, bn_axis_name=steps.AXIS)
    with pytest.raises(checkpoints.CheckpointError, match=r'params/fc/bias has shape \(7,\)'):
        training.initial_variables(tiny_config, model, jax.random.key(0))
    tiny_config.init_from_skip = ('head',)
    with pytest.raises(defaults.ConfigError, match=r"init_from_skip names \['head'\]"):
        training.initial_variables(tiny_config, model, jax.random.key(0))


# ---------------------------------------------------------------------------------------------
# Whole runs.


def test_the_final_checkpoint_records_where_training_ended(straight_run):
    variables, _, metadata, loop_state = read_final_checkpoint(straight_run)
    assert metadata['step'] == 4 and metadata['epoch'] == 2 and metadata['position_in_epoch'] == 0
    assert metadata['class_names'] is not None and len(metadata['class_names']) == 4
    assert loop_state['plateau']['learning_rate'] == pytest.approx(0.01 / 4)
    assert set(variables) == {'params', 'batch_stats'}
    with open(os.path.join(straight_run, 'eval_video.json')) as file:
        assert 0 <= json.load(file)['video_top1'] <= 1
    with open(os.path.join(straight_run, 'eval_multiview.json')) as file:
        multiview = json.load(file)
    assert multiview['mode'] == 'multiview'
    assert multiview['protocol'] == '2 clips of 4 frames x 3 crops per video, averaged'
    assert multiview['num_clips'] == multiview['num_videos'] * 2 * 3


def test_tensorboard_events_hold_training_validation_and_video_scalars(straight_run):
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(straight_run, size_guidance={'tensors': 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()['tensors']) | set(accumulator.Tags()['scalars'])
    for tag in (
        'train/loss',
        'train/accuracy',
        'train/learning_rate',
        'train/clips_per_second',
        'train/input_wait_fraction',
        'val/loss',
        'val/accuracy',
        'eval_video/video_top1',
        'eval_multiview/video_top1',
    ):
        assert tag in tags, f'{tag} missing from {sorted(tags)}'
    losses = accumulator.Tensors('train/loss')
    assert [event.step for event in losses] == [1, 2, 3, 4]
    # The plateau scheduler's rate reaches the optimiser: halved after epoch 0's validation.
    rates = [
        float(tf.make_ndarray(event.tensor_proto))
        for event in accumulator.Tensors('train/learning_rate')
    ]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.005, 0.005], rtol=1e-6)


def _stop_at_step(monkeypatch, stop_step: int, steps_per_epoch: int) -> None:
    """Makes the training input send SIGTERM to this process just before step `stop_step`."""
    real = input_pipeline.create_train_iterator

    def create_train_iterator(config, *, epoch, start_step=0):
        for index, batch in enumerate(real(config, epoch=epoch, start_step=start_step)):
            if epoch * steps_per_epoch + start_step + index + 1 == stop_step:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    monkeypatch.setattr(input_pipeline, 'create_train_iterator', create_train_iterator)


def test_an_interrupted_run_resumes_to_the_same_state(straight_run, tiny_config, tmp_path):
    workdir = str(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        _stop_at_step(patch, stop_step=3, steps_per_epoch=2)  # Mid-way through epoch 1.
        training.train_and_evaluate(tiny_config, workdir)
    _, _, metadata, _ = read_final_checkpoint(workdir)
    assert (metadata['step'], metadata['epoch'], metadata['position_in_epoch']) == (3, 1, 1)

    training.train_and_evaluate(tiny_config, workdir)
    resumed = read_final_checkpoint(workdir)
    straight = read_final_checkpoint(straight_run)
    jax.tree.map(np.testing.assert_array_equal, resumed[0], straight[0])  # Variables.
    jax.tree.map(np.testing.assert_array_equal, resumed[1], straight[1])  # Optimiser state.
    assert resumed[3] == straight[3]  # Plateau state and best validation accuracy.


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path, monkeypatch
):
    real = input_pipeline.create_train_iterator

    def create_train_iterator(config, *, epoch, start_step=0):
        for batch in real(config, epoch=epoch, start_step=start_step):
            if epoch == 1:  # A label outside the classes makes the loss NaN from step 3 on.
                batch = {**batch, 'labels': np.full_like(batch['labels'], 99)}
            yield batch

    monkeypatch.setattr(input_pipeline, 'create_train_iterator', create_train_iterator)
    tiny_config.eval_every_epochs = 0
    tiny_config.schedule.name = 'constant'
    with pytest.raises(training.TrainingDivergedError, match='diverged at step 3') as error:
        training.train_and_evaluate(tiny_config, str(tmp_path))
    good = os.path.join(checkpoints.checkpoints_directory(str(tmp_path)), '2')
    assert f'The last good checkpoint, {good}, is kept.' in str(error.value)
    variables, _, metadata, _ = read_final_checkpoint(str(tmp_path))
    assert metadata['step'] == 2
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(variables))


def test_sigterm_saves_a_complete_checkpoint_and_exits_cleanly(tiny_config_path, tmp_path):
    workdir = str(tmp_path / 'workdir')
    command = [
        sys.executable,
        os.path.join(REPO, 'train.py'),
        f'--config={tiny_config_path}',
        f'--workdir={workdir}',
        '--config.num_epochs=1000',
        '--config.checkpoint_every_steps=0',
        '--config.eval_every_epochs=1000',
        '--config.schedule.name=constant',
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_environment(4),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if 'step 3/' in line:
                process.send_signal(signal.SIGTERM)
                break
        _, output = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    lines.append(output)
    assert process.returncode == 0, ''.join(lines)[-3000:]
    assert 'Stopped at step' in output
    # The checkpoint is complete and says where to resume (resuming itself is checked, to the
    # bit, by test_an_interrupted_run_resumes_to_the_same_state).
    variables, opt_state, metadata, _ = read_final_checkpoint(workdir)
    assert metadata['step'] >= 3
    assert metadata['step'] == 2 * metadata['epoch'] + metadata['position_in_epoch']
    assert jax.tree.leaves(variables) and jax.tree.leaves(opt_state)


def test_importing_train_py_loads_neither_jax_nor_tensorflow():
    # The dataset build's spawned worker processes re-import the main script.
    probe = "import sys, train; print(sorted({'jax', 'tensorflow'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, '-c', probe],
        cwd=REPO,
        env=subprocess_environment(1),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_the_cli_names_an_unknown_config_field_without_a_traceback(tiny_config_path, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, 'train.py'),
            f'--config={tiny_config_path}',
            f'--workdir={tmp_path}',
            '--config.model.dept=18',
        ],
        cwd=REPO,
        env=subprocess_environment(1),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert 'config.model.dept (did you mean config.model.depth?)' in result.stderr
    assert 'Traceback' not in result.stderr
