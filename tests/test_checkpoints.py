"""Training checkpoints: round trip, retention, unreadable checkpoints, finding 'latest'/'best'."""

import logging
import os

import numpy as np
import optax
import pytest

from r3d_jax import checkpoints


def _variables(value: float) -> dict:
    return {
        'params': {'conv1': {'kernel': np.full((2, 3), value, np.float32)}},
        'batch_stats': {'bn1': {'mean': np.full(3, value, np.float32)}},
    }


def _opt_state(value: float) -> optax.TraceState:
    return optax.TraceState(trace=_variables(value)['params'])


def _save(manager, step: int, value: float, metrics=None) -> None:
    checkpoints.save_training_checkpoint(
        manager,
        step,
        variables=_variables(value),
        opt_state=_opt_state(value),
        metadata={'model': {'depth': 10}, 'input': {}, 'class_names': ['a'], 'step': step},
        loop_state={'plateau': {'best': None}, 'best_val_accuracy': value},
        metrics=metrics,
    )


def _restore(manager, check=lambda metadata: None):
    return checkpoints.restore_training_checkpoint(
        manager, variables=_variables(0.0), opt_state=_opt_state(0.0), check_metadata=check
    )


def test_training_checkpoint_round_trips_every_item(tmp_path):
    manager = checkpoints.create_manager(str(tmp_path), keep=2)
    _save(manager, 7, 1.5)
    manager.wait_until_finished()
    step, variables, opt_state, metadata, loop_state = _restore(manager)
    manager.close()
    assert step == 7
    np.testing.assert_array_equal(variables['params']['conv1']['kernel'], np.full((2, 3), 1.5))
    np.testing.assert_array_equal(variables['batch_stats']['bn1']['mean'], np.full(3, 1.5))
    assert isinstance(opt_state, optax.TraceState)
    np.testing.assert_array_equal(opt_state.trace['conv1']['kernel'], np.full((2, 3), 1.5))
    assert metadata['step'] == 7 and metadata['class_names'] == ['a']
    assert loop_state == {'plateau': {'best': None}, 'best_val_accuracy': 1.5}


def test_a_training_step_directory_loads_with_load_variables(tmp_path):
    manager = checkpoints.create_manager(str(tmp_path), keep=2)
    _save(manager, 3, 2.0)
    manager.close()
    variables, metadata = checkpoints.load_variables(checkpoints.find_checkpoint(str(tmp_path)))
    np.testing.assert_array_equal(variables['params']['conv1']['kernel'], np.full((2, 3), 2.0))
    assert metadata['model'] == {'depth': 10}


def test_the_latest_k_and_the_best_validated_checkpoint_are_kept(tmp_path):
    manager = checkpoints.create_manager(str(tmp_path), keep=2)
    _save(manager, 1, 1.0, {'val_accuracy': 0.3, 'val_loss': 2.0})
    _save(manager, 2, 2.0, {'val_accuracy': 0.9, 'val_loss': 1.0})  # The best.
    _save(manager, 3, 3.0)  # Between validations.
    _save(manager, 4, 4.0, {'val_accuracy': 0.5, 'val_loss': 1.5})
    _save(manager, 5, 5.0)
    manager.wait_until_finished()
    assert manager.all_steps() == [2, 4, 5]
    manager.close()
    assert checkpoints.find_checkpoint(str(tmp_path), 'latest').endswith(f'{os.sep}5')
    assert checkpoints.find_checkpoint(str(tmp_path), 'best').endswith(f'{os.sep}2')
    # As config.init_from names another run's checkpoint.
    assert checkpoints.resolve_checkpoint(f'{tmp_path}:best').endswith(f'{os.sep}2')
    assert checkpoints.resolve_checkpoint(f'{tmp_path}:latest').endswith(f'{os.sep}5')
    step_dir = os.path.join(checkpoints.checkpoints_directory(str(tmp_path)), '4')
    assert checkpoints.resolve_checkpoint(step_dir) == step_dir


def test_an_unreadable_latest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, caplog):
    manager = checkpoints.create_manager(str(tmp_path), keep=3)
    _save(manager, 1, 1.0)
    _save(manager, 2, 2.0)
    manager.wait_until_finished()
    latest = os.path.join(checkpoints.checkpoints_directory(str(tmp_path)), '2')
    for root, _, files in os.walk(os.path.join(latest, checkpoints.VARIABLES)):
        for name in files:
            with open(os.path.join(root, name), 'wb') as file:
                file.write(b'garbage')
    with caplog.at_level(logging.ERROR):
        step, variables, *_ = _restore(manager)
    assert step == 1
    np.testing.assert_array_equal(variables['params']['conv1']['kernel'], np.full((2, 3), 1.0))
    assert f'Checkpoint {latest} cannot be read (' in caplog.text
    assert os.path.isdir(f'{latest}.unreadable') and not os.path.exists(latest)
    # Training can write step 2 again.
    _save(manager, 2, 2.5)
    manager.close()


def test_a_checkpoint_of_another_run_is_refused_not_set_aside(tmp_path):
    manager = checkpoints.create_manager(str(tmp_path), keep=3)
    _save(manager, 1, 1.0)
    manager.wait_until_finished()

    def refuse(metadata):
        raise checkpoints.CheckpointError('another run')

    with pytest.raises(checkpoints.CheckpointError, match='another run'):
        _restore(manager, refuse)
    manager.close()
    assert os.path.isdir(os.path.join(checkpoints.checkpoints_directory(str(tmp_path)), '1'))


def test_no_checkpoint_restores_as_none(tmp_path):
    manager = checkpoints.create_manager(str(tmp_path), keep=3)
    assert _restore(manager) is None
    manager.close()


def test_find_checkpoint_errors_name_the_directory(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match=f'No checkpoints in {tmp_path}'):
        checkpoints.find_checkpoint(str(tmp_path), 'latest')
    manager = checkpoints.create_manager(str(tmp_path), keep=3)
    _save(manager, 1, 1.0)
    manager.close()
    with pytest.raises(checkpoints.CheckpointError, match='carries a validation accuracy'):
        checkpoints.find_checkpoint(str(tmp_path), 'best')
    with pytest.raises(checkpoints.CheckpointError, match='is not an r3d-jax checkpoint'):
        checkpoints.find_checkpoint(str(tmp_path), str(tmp_path))
    step_dir = os.path.join(checkpoints.checkpoints_directory(str(tmp_path)), '1')
    assert checkpoints.find_checkpoint(str(tmp_path), step_dir) == step_dir
