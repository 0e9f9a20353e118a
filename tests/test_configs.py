"""The shipped configs load, use only known fields, say how to run them and hold their recipes."""

import importlib
import re

import pytest

from r3d_jax import defaults, optimizers, training
from r3d_jax.data import layouts
from r3d_jax.models import create_model

KINETICS_DEPTHS = (18, 34, 50, 101, 152, 200)
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
RECIPES = (
    'r18_ucf101',
    'demo',
    'r18_hmdb51',
    'video_list_example',
    *(f'r{depth}_kinetics400' for depth in KINETICS_DEPTHS),
    'r18_activitynet',
    'r18_kinetics400_to_ucf101',
    'r18_kinetics400_to_hmdb51',
    *FINE_TUNING,
)


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


@pytest.mark.parametrize('name', [r for r in RECIPES if r != 'demo'])
def test_every_recipe_says_how_to_build_its_dataset_with_its_identity(name):
    """The build command in the docstring writes the dataset the recipe reads."""
    config = _config(name)
    doc = importlib.import_module(f'configs.{name}').__doc__.replace('\\\n', ' ')
    command = ' '.join(doc[doc.index('python -m r3d_jax.data.build'):].split())
    assert f'--dataset={config.data.dataset} ' in command
    assert f'--frame_short_side={config.data.frame_short_side}' in command or (
        config.data.frame_short_side == defaults.get_config().data.frame_short_side
    )
    for field in layouts.get(config.data.dataset).config_fields:
        flag = layouts.flag_of(field)
        assert f'--{flag}={config.data[field]}' in command or (
            config.data[field] == defaults.get_config().data[field] and f'--{flag}=' not in command
        ), field
    layouts.config_name(config.data)  # The identity is valid.


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


def _reference_recipe(config):
    """The reference's training recipe: SGD 0.1 dampened, wd 1e-3, batch 128, 200 epochs."""
    assert (config.input.clip_length, config.input.crop_size) == (16, 112)
    assert config.input.scales == pytest.approx((1.0, 2**-0.25, 2**-0.5, 2**-0.75, 0.5))
    assert len(config.input.crop_positions) == 5 and config.input.flip_probability == 0.5
    assert config.input.mean == pytest.approx((114.7748, 107.7354, 99.4750))
    assert config.optimizer.name == 'sgd' and config.optimizer.learning_rate == 0.1
    assert (config.optimizer.momentum, config.optimizer.dampening) == (0.9, 0.9)
    assert config.optimizer.weight_decay == 1e-3 and config.optimizer.trainable == 'all'
    assert (config.schedule.name, config.schedule.plateau_patience) == ('plateau', 10)
    assert (config.batch_size, config.num_epochs) == (128, 200)
    assert config.init_from == ''


def _reference_finetuning(config):
    assert config.optimizer.trainable == 'last_stage_and_head'
    assert config.optimizer.learning_rate == 0.001
    assert config.optimizer.weight_decay == 1e-5
    assert config.num_epochs == 300
    assert config.model.shortcut == 'A'  # As the Kinetics ResNet-18 it starts from.


def test_r18_hmdb51_is_the_ucf101_recipe_on_hmdb51():
    config = _config('r18_hmdb51')
    _reference_recipe(config)
    assert (config.data.dataset, config.data.split_number) == ('hmdb51', 1)
    assert (config.data.train_split, config.data.eval_split) == ('train', 'test')
    assert (config.model.depth, config.model.num_classes, config.model.shortcut) == (18, 51, 'A')


def test_r18_hmdb51_finetune_starts_from_imported_kinetics_weights_with_51_classes():
    config = _config('r18_hmdb51_finetune')
    _reference_finetuning(config)
    assert (config.data.dataset, config.model.num_classes) == ('hmdb51', 51)
    assert config.init_from == 'weights/r18_kinetics_hmdb51'
    doc = importlib.import_module('configs.r18_hmdb51_finetune').__doc__
    assert f'--output={config.init_from}' in doc


def test_video_list_example_fine_tunes_on_a_named_video_list():
    config = _config('video_list_example')
    _reference_finetuning(config)
    assert config.data.dataset == 'video_list'
    assert layouts.config_name(config.data) == 'my_videos_128px'
    doc = importlib.import_module('configs.video_list_example').__doc__
    assert f'--output={config.init_from}' in doc


@pytest.mark.parametrize('depth', KINETICS_DEPTHS)
def test_kinetics400_recipes_are_the_references_with_its_shortcuts(depth):
    config = _config(f'r{depth}_kinetics400')
    _reference_recipe(config)
    assert (config.data.dataset, config.data.kinetics_version) == ('kinetics', 400)
    assert (config.data.train_split, config.data.eval_split) == ('train', 'validation')
    assert config.data.max_skip_fraction == 0.2
    assert (config.model.depth, config.model.num_classes) == (depth, 400)
    assert config.model.shortcut == ('A' if depth <= 34 else 'B')


def test_r18_activitynet_trains_from_scratch_on_the_segments():
    config = _config('r18_activitynet')
    _reference_recipe(config)
    assert config.data.dataset == 'activitynet'
    assert (config.data.train_split, config.data.eval_split) == ('train', 'validation')
    assert (config.model.depth, config.model.num_classes) == (18, 200)


@pytest.mark.parametrize(('target', 'classes'), [('ucf101', 101), ('hmdb51', 51)])
def test_kinetics_runs_here_fine_tune_with_a_fresh_classifier(target, classes):
    config = _config(f'r18_kinetics400_to_{target}')
    kinetics = _config('r18_kinetics400')
    _reference_finetuning(config)
    assert (config.data.dataset, config.model.num_classes) == (target, classes)
    assert config.init_from_skip == ('fc',)
    assert config.init_from == 'workdirs/r18_kinetics400:best'
    doc = importlib.import_module(f'configs.r18_kinetics400_to_{target}').__doc__
    assert 'configs/r18_kinetics400.py' in doc
    for field in ('arch', 'depth', 'shortcut'):
        assert config.model[field] == kinetics.model[field]
    assert config.input.mean == kinetics.input.mean
    assert config.data.frame_short_side == kinetics.data.frame_short_side


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
