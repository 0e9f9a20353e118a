"""PyTorch weights imported into the JAX model give the same logits and gradients."""

import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from r3d_jax import checkpoints, defaults
from r3d_jax.convert_torch import (
    TorchConversionError,
    load_torch_state_dict,
    torch_to_flax_variables,
)
from r3d_jax.models import create_model
from tests.torch_resnet3d import from_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP_SHAPE = (2, 8, 32, 32, 3)
# Train mode needs more than 2 values per channel at the last stage (1x1x1 at 8x32x32) for
# batch statistics that are well conditioned.
TRAIN_CLIP_SHAPE = (4, 8, 32, 32, 3)


def make_config(depth=18, shortcut='B', stem='reference', num_classes=5, **model_fields):
    config = defaults.get_config()
    config.model.update(
        depth=depth, shortcut=shortcut, stem=stem, num_classes=num_classes, dtype='float32'
    )
    config.model.update(model_fields)
    # Unit-scale inputs keep logits and gradients of random networks O(1).
    config.input.std = defaults.REFERENCE_STD
    return config


def random_torch_model(config, seed=0):
    """The PyTorch model of `config` with random weights and random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = from_config(config.model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def random_clips(seed=0, shape=CLIP_SHAPE):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def torch_input(clips, config, dtype=torch.float32):
    """What the JAX model computes on the device: normalised float clips, here as N,C,T,H,W."""
    x = (clips * config.input.value_scale - np.asarray(config.input.mean)) / np.asarray(
        config.input.std
    )
    return torch.from_numpy(x).to(dtype).permute(0, 4, 1, 2, 3).contiguous()


def assert_close(actual, expected, tolerance=1e-4):
    """Agreement to `tolerance` relative to the largest magnitude (and absolutely below 1)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize(
    'depth, shortcut, stem, stem_conv',
    [
        (18, 'A', 'reference', 'space_to_depth'),
        (18, 'B', 'reference', 'space_to_depth'),
        (18, 'B', 'reference', 'direct'),
        (50, 'B', 'reference', 'space_to_depth'),
        (18, 'B', 'torchvision', 'space_to_depth'),
    ],
)
def test_eval_logits_match_pytorch(depth, shortcut, stem, stem_conv):
    config = make_config(depth, shortcut, stem, stem_conv=stem_conv)
    torch_model = random_torch_model(config).eval()
    clips = random_clips()
    with torch.no_grad():
        expected = torch_model(torch_input(clips, config)).numpy()

    variables, report = torch_to_flax_variables(torch_model.state_dict(), config)
    model = create_model(config)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, clips)

    assert report.layout == stem and not report.head_reinitialised
    assert logits.dtype == jnp.float32
    assert np.abs(expected).max() > 1e-2  # The comparison is not between two near-zero outputs.
    assert_close(logits, expected)


def torch_train_step(torch_model, clips, config, weights):
    """Train-mode logits; gradients of sum(logits * weights) and updated buffers, by name."""
    torch_model.train()
    torch_model.zero_grad()
    x = torch_input(clips, config, next(torch_model.parameters()).dtype)
    logits = torch_model(x)
    (logits * torch.from_numpy(weights).to(logits.dtype)).sum().backward()
    after = {name: p.grad for name, p in torch_model.named_parameters()}
    after.update(dict(torch_model.named_buffers()))
    return logits.detach().numpy(), after


def flax_train_step(config, variables, clips, weights):
    """Train-mode logits, gradients of sum(logits * weights) and updated batch statistics."""
    model = create_model(config)

    def loss(params):
        logits, updates = model.apply(
            {'params': params, 'batch_stats': variables['batch_stats']},
            clips,
            train=True,
            mutable=['batch_stats'],
        )
        return jnp.sum(logits * weights), (logits, updates['batch_stats'])

    grads, (logits, batch_stats) = jax.jit(jax.grad(loss, has_aux=True))(variables['params'])
    return logits, grads, batch_stats


def assert_trees_close(actual, expected, tolerance):
    paths = jax.tree_util.tree_flatten_with_path(expected)[0]
    for (path, want), got in zip(paths, jax.tree.leaves(actual), strict=True):
        try:
            assert_close(got, want, tolerance)
        except AssertionError as error:
            raise AssertionError(f'{jax.tree_util.keystr(path)}: {error}') from None


def running_means(batch_stats):
    return jax.tree.map(lambda s: s['mean'], batch_stats, is_leaf=lambda s: 'mean' in s)


def test_train_mode_logits_and_statistics_match_pytorch():
    config = make_config(18, 'B')
    torch_model = random_torch_model(config)
    clips = random_clips(1, TRAIN_CLIP_SHAPE)
    weights = np.random.default_rng(2).normal(size=(TRAIN_CLIP_SHAPE[0], 5)).astype(np.float32)
    variables, _ = torch_to_flax_variables(torch_model.state_dict(), config)

    expected_logits, torch_after = torch_train_step(torch_model, clips, config, weights)
    expected, _ = torch_to_flax_variables(torch_after, config)
    logits, _, batch_stats = flax_train_step(config, variables, clips, weights)

    assert_close(logits, expected_logits)
    # PyTorch updates running variances with the unbiased batch variance, Flax the biased one.
    assert_trees_close(running_means(batch_stats), running_means(expected['batch_stats']), 1e-5)


@pytest.mark.parametrize(
    'depth, shortcut, stop_gradient', [(18, 'B', True), (10, 'A', True), (10, 'A', False)]
)
def test_train_mode_gradients_match_pytorch(depth, shortcut, stop_gradient):
    """Compared in float64 on both sides.

    Gradients of ReLU networks jump where an activation crosses zero, and fp32 rounding (about
    1e-6 relative) flips a few of the ~10^6 activations of a clip batch between any two
    implementations, each flip moving whole gradient tensors by up to a few percent. In
    float64 no activation lies that close to zero, so gradients can be compared tightly.
    """
    config = make_config(depth, shortcut, shortcut_a_stop_gradient=stop_gradient)
    torch_model = random_torch_model(config).double()
    clips = random_clips(1)
    weights = np.random.default_rng(2).normal(size=(CLIP_SHAPE[0], 5))
    variables, _ = torch_to_flax_variables(torch_model.state_dict(), config)

    expected_logits, torch_after = torch_train_step(torch_model, clips, config, weights)
    # Gradients and updated buffers carry the state_dict's names: convert them like weights.
    expected, _ = torch_to_flax_variables(torch_after, config)
    with jax.enable_x64(True):
        config.model.dtype = 'float64'
        logits, grads, batch_stats = flax_train_step(config, variables, clips, weights)

    assert_close(logits, expected_logits, 1e-6)
    assert_trees_close(grads, expected['params'], 1e-5)
    assert_trees_close(running_means(batch_stats), running_means(expected['batch_stats']), 1e-6)
    if shortcut == 'A':
        # The other choice of the option gives other gradients upstream of the shortcuts.
        other = make_config(depth, 'A', shortcut_a_stop_gradient=not stop_gradient)
        _, other_grads = torch_train_step(
            random_torch_model(other).double(), clips, config, weights
        )
        other_stem = other_grads['conv1.weight'].numpy().transpose(2, 3, 4, 1, 0)
        stem = np.asarray(grads['conv1']['kernel'])
        assert np.abs(stem - other_stem).max() > 1e-2 * np.abs(other_stem).max()


@pytest.fixture(scope='module')
def resnet10_state_dict():
    return random_torch_model(make_config(10)).state_dict()


def test_truncated_file_is_reported_with_its_name(tmp_path, resnet10_state_dict):
    path = tmp_path / 'truncated.pth'
    torch.save(resnet10_state_dict, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchConversionError, match=r'truncated\.pth could not be read'):
        load_torch_state_dict(str(path))


def test_missing_file_is_reported_with_its_name(tmp_path):
    with pytest.raises(TorchConversionError, match=r'absent\.pth does not exist'):
        load_torch_state_dict(str(tmp_path / 'absent.pth'))


def test_file_without_state_dict_is_rejected(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'epoch': 3, 'arch': 'resnet-18'}, path)
    with pytest.raises(TorchConversionError, match='neither a state_dict'):
        load_torch_state_dict(str(path))


def test_reference_checkpoint_file_with_module_prefix_and_old_batch_norm_loads(
    tmp_path, resnet10_state_dict
):
    """A DataParallel checkpoint of the reference, saved (in PyTorch's legacy file format)
    before num_batches_tracked existed."""
    old_names = {
        f'module.{key}': value
        for key, value in resnet10_state_dict.items()
        if not key.endswith('num_batches_tracked')
    }
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    path = tmp_path / 'save_200.pth'
    checkpoint = {'epoch': 200, 'arch': 'resnet-10', 'state_dict': old_names}
    torch.save(
        {**checkpoint, 'optimizer': optimizer.state_dict()},
        path,
        _use_new_zipfile_serialization=False,
    )

    loaded = load_torch_state_dict(str(path))
    config = make_config(10)
    variables, report = torch_to_flax_variables(loaded, config)
    direct, _ = torch_to_flax_variables(resnet10_state_dict, config)

    assert not any(key.startswith('module.') for key in loaded)
    assert report.ignored_counters == 0
    jax.tree.map(np.testing.assert_array_equal, variables, direct)


def test_conv_and_fc_layouts_are_transposed(resnet10_state_dict):
    variables, report = torch_to_flax_variables(resnet10_state_dict, make_config(10))
    np.testing.assert_array_equal(
        variables['params']['conv1']['kernel'],
        resnet10_state_dict['conv1.weight'].numpy().transpose(2, 3, 4, 1, 0),
    )
    np.testing.assert_array_equal(
        variables['params']['fc']['kernel'], resnet10_state_dict['fc.weight'].numpy().T
    )
    np.testing.assert_array_equal(
        variables['batch_stats']['layer2_0']['bn1']['var'],
        resnet10_state_dict['layer2.0.bn1.running_var'].numpy(),
    )
    assert report.ignored_counters == sum(
        key.endswith('num_batches_tracked') for key in resnet10_state_dict
    )


def test_checkpoint_of_another_depth_names_the_depth(resnet10_state_dict):
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(resnet10_state_dict, make_config(18))
    message = str(error.value)
    assert 'missing keys' in message and 'layer1.1.conv1.weight' in message
    assert 'looks like a ResNet-10 checkpoint' in message
    assert 'config.model.depth=10' in message


def test_shortcut_b_checkpoint_for_shortcut_a_model_says_shortcut_b(resnet10_state_dict):
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(resnet10_state_dict, make_config(10, 'A'))
    message = str(error.value)
    assert 'unexpected keys' in message and 'layer2.0.downsample.0.weight' in message
    assert 'has downsample convs, so it uses shortcut B' in message


def test_shortcut_a_checkpoint_for_shortcut_b_model_says_shortcut_a():
    state_dict = random_torch_model(make_config(10, 'A')).state_dict()
    with pytest.raises(TorchConversionError, match='no downsample convs, so it uses shortcut A'):
        torch_to_flax_variables(state_dict, make_config(10, 'B'))


def test_missing_key_is_named(resnet10_state_dict):
    state_dict = dict(resnet10_state_dict)
    del state_dict['layer3.0.bn2.running_var']
    expected = r'missing keys \(1\): layer3\.0\.bn2\.running_var'
    with pytest.raises(TorchConversionError, match=expected):
        torch_to_flax_variables(state_dict, make_config(10))


def test_misshaped_stem_names_the_shape_and_the_fix():
    state_dict = random_torch_model(make_config(10, stem_temporal_kernel=3)).state_dict()
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(state_dict, make_config(10))
    message = str(error.value)
    assert 'conv1.weight (64, 3, 3, 7, 7) (expected (64, 3, 7, 7, 7))' in message
    assert 'config.model.stem_temporal_kernel=3' in message


def test_torchvision_names_for_reference_stem_say_which_stem(resnet10_state_dict):
    state_dict = random_torch_model(make_config(10, stem='torchvision')).state_dict()
    with pytest.raises(TorchConversionError, match=r"set config\.model\.stem='torchvision'"):
        torch_to_flax_variables(state_dict, make_config(10))


def test_class_count_mismatch_keeps_backbone_and_reinitialises_head(
    resnet10_state_dict, caplog
):
    config = make_config(10, num_classes=3)
    with caplog.at_level(logging.WARNING):
        variables, report = torch_to_flax_variables(
            resnet10_state_dict, config, rng=jax.random.key(7)
        )
    again, _ = torch_to_flax_variables(resnet10_state_dict, config, rng=jax.random.key(7))
    reference, _ = torch_to_flax_variables(resnet10_state_dict, make_config(10))

    assert report.head_reinitialised and report.checkpoint_num_classes == 5
    assert 'initialised a new fc head' in caplog.text
    assert variables['params']['fc']['kernel'].shape == (512, 3)
    bound = 1 / np.sqrt(512)
    assert np.abs(variables['params']['fc']['kernel']).max() <= bound
    jax.tree.map(np.testing.assert_array_equal, variables['params']['fc'], again['params']['fc'])
    del variables['params']['fc'], reference['params']['fc']
    jax.tree.map(np.testing.assert_array_equal, variables, reference)


def test_command_line_writes_a_checkpoint_that_loads_back(tmp_path, resnet10_state_dict):
    source = tmp_path / 'resnet10.pth'
    torch.save({'epoch': 1, 'arch': 'resnet-10', 'state_dict': resnet10_state_dict}, source)
    output = tmp_path / 'converted'
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO_ROOT)
    env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
    completed = subprocess.run(
        [
            sys.executable,
            '-m',
            'r3d_jax.convert_torch',
            f'--checkpoint={source}',
            f'--config={os.path.join(REPO_ROOT, "configs", "default.py")}',
            '--config.model.depth=10',
            '--config.model.num_classes=5',
            f'--output={output}',
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    variables, metadata = checkpoints.load_variables(str(output))
    expected, _ = torch_to_flax_variables(resnet10_state_dict, make_config(10))
    jax.tree.map(np.testing.assert_array_equal, variables, expected)
    assert metadata['model']['depth'] == 10 and metadata['model']['num_classes'] == 5
    assert metadata['input']['mean'] == list(defaults.REFERENCE_MEAN)
    assert metadata['class_names'] is None
    assert metadata['source'] == str(source)
    assert metadata['conversion']['layout'] == 'reference'
