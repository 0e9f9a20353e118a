"""The shipped configs load, use only known fields, say how to run them and hold their recipes."""

import importlib

import pytest

from r3d_jax import defaults, optimizers, training
from r3d_jax.models import create_model

RECIPES = ('r18_ucf101', 'r18_ucf101_finetune', 'demo')


def _config(name: str):
    return importlib.import_module(f'configs.{name}').get_config()


@pytest.mark.parametrize('name', ('default', *RECIPES))
def test_every_config_uses_only_fields_of_the_default_config(name):
    config = _config(name)
    assert defaults.unknown_fields(sorted(defaults.field_paths(config))) == []
    training.check_config(config)
    create_model(config)
    optimizers.create_optimizer(config, steps_per_epoch=10)


@pytest.mark.parametrize('name', RECIPES)
def test_every_recipe_opens_with_the_command_that_runs_it(name):
    doc = importlib.import_module(f'configs.{name}').__doc__
    assert f'python train.py --config=configs/{name}.py --workdir=' in doc


def test_unknown_fields_are_found_and_a_close_field_is_suggested():
    config = defaults.get_config()
    config.optimizer.momentun = 0.9
    assert defaults.unknown_fields(sorted(defaults.field_paths(config))) == [
        'config.optimizer.momentun (did you mean config.optimizer.momentum?)'
    ]
    with pytest.raises(defaults.ConfigError, match=r'config\.optimizer\.momentun'):
        training.check_config(config)


def test_r18_ucf101_is_the_papers_recipe():
    config = _config('r18_ucf101')
    assert config.data.split_number == 1
    assert (config.input.clip_length, config.input.crop_size) == (16, 112)
    assert config.input.scales == pytest.approx((1.0, 2**-0.25, 2**-0.5, 2**-0.75, 0.5))
    assert config.input.flip_probability == 0.5
    assert config.input.mean == pytest.approx((114.7748, 107.7354, 99.4750))
    assert (config.model.depth, config.model.num_classes, config.model.shortcut) == (18, 101, 'A')
    assert config.optimizer.name == 'sgd'
    assert config.optimizer.learning_rate == 0.1
    assert (config.optimizer.momentum, config.optimizer.dampening) == (0.9, 0.9)
    assert config.optimizer.weight_decay == 1e-3
    assert not config.optimizer.nesterov
    assert config.schedule.name == 'plateau'
    assert (config.schedule.plateau_factor, config.schedule.plateau_patience) == (0.1, 10)
    assert (config.batch_size, config.num_epochs, config.eval_every_epochs) == (128, 200, 1)
    assert config.init_from == ''


def test_r18_ucf101_finetune_trains_the_last_stage_from_kinetics_weights():
    config = _config('r18_ucf101_finetune')
    assert config.init_from
    assert config.optimizer.trainable == 'last_stage_and_head'
    assert config.optimizer.learning_rate == 0.001
    assert config.optimizer.weight_decay == 1e-5
    assert config.num_epochs == 300
    assert config.model.shortcut == 'A'  # As the reference's Kinetics ResNet-18.
    assert 'python -m r3d_jax.convert_torch' in importlib.import_module(
        'configs.r18_ucf101_finetune'
    ).__doc__


def test_demo_builds_its_synthetic_data_and_trains_a_small_model():
    config = _config('demo')
    assert config.data.if_missing == 'synthetic'
    assert config.data.synthetic.num_classes == config.model.num_classes
    assert config.model.dtype == 'float32'
    assert config.video_eval_at_end
