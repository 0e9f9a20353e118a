"""The shipped configs load, use only known fields, say how to run them and hold their recipes."""

import importlib
import re

import pytest

from r3d_jax import defaults, optimizers, training
from r3d_jax.models import create_model

# The released Kinetics checkpoints the paper fine-tunes, per recipe: (file, arch, depth,
# shortcut, frames).
FINE_TUNING = {
    'r18_ucf101_finetune': ('resnet-18-kinetics.pth', 'resnet', 18, 'A', 16),
    'r18_hmdb51_finetune': ('resnet-18-kinetics.pth', 'resnet', 18, 'A', 16),
    'r34_ucf101_finetune': ('resnet-34-kinetics.pth', 'resnet', 34, 'A', 16),
    'r34_hmdb51_finetune': ('resnet-34-kinetics.pth', 'resnet', 34, 'A', 16),
    'r50_ucf101_finetune': ('resnet-50-kinetics.pth', 'resnet', 50, 'B', 16),
    'r50_hmdb51_finetune': ('resnet-50-kinetics.pth', 'resnet', 50, 'B', 16),
    'resnext101_ucf101_finetune': ('resnext-101-kinetics.pth', 'resnext', 101, 'B', 16),
    'resnext101_hmdb51_finetune': ('resnext-101-kinetics.pth', 'resnext', 101, 'B', 16),
    'resnext101_64f_ucf101_finetune': ('resnext-101-64f-kinetics.pth', 'resnext', 101, 'B', 64),
    'resnext101_64f_hmdb51_finetune': ('resnext-101-64f-kinetics.pth', 'resnext', 101, 'B', 64),
}
RECIPES = ('r18_ucf101', *FINE_TUNING, 'demo')


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
    commands = ' '.join(doc.replace('\\\n', ' ').split())  # Continued lines joined.
    assert f'python train.py --config=configs/{name}.py --workdir=' in commands


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


@pytest.mark.parametrize('name', FINE_TUNING)
def test_fine_tuning_recipes_follow_the_reference_author_from_the_released_weights(name):
    checkpoint, arch, depth, shortcut, frames = FINE_TUNING[name]
    config = _config(name)
    doc = importlib.import_module(f'configs.{name}').__doc__
    assert (config.model.arch, config.model.depth, config.model.shortcut) == (arch, depth, shortcut)
    if arch == 'resnext':
        assert config.model.cardinality == 32
    assert config.input.clip_length == frames
    assert config.optimizer.trainable == 'last_stage_and_head'
    assert config.optimizer.learning_rate == 0.001
    assert config.optimizer.weight_decay == 1e-5
    assert (config.batch_size, config.num_epochs) == (128, 300)
    if 'hmdb51' in name:
        assert (config.data.dataset, config.model.num_classes) == ('hmdb51', 51)
    else:
        assert (config.data.dataset, config.model.num_classes) == ('ucf101', 101)
    assert config.data.split_number == 1
    # The convert command reads the released file and writes what the recipe starts from.
    convert = re.search(r'python -m r3d_jax\.convert_torch (.*?)\n\s*python train', doc, re.S)
    assert convert, doc
    flags = convert.group(1)
    assert f'--checkpoint={checkpoint}' in flags
    assert f'--config=configs/{name}.py' in flags
    assert f'--output={config.init_from}' in flags
