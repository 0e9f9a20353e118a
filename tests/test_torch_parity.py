"""Every family gives the logits and gradients of its PyTorch layout, from the same weights.

The PyTorch layouts (`r3d_jax.models.torch_layouts`) are written independently of the Flax
models; weights go from one to the other through `convert_torch.torch_to_flax_variables`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from r3d_jax import defaults
from r3d_jax.convert_torch import torch_to_flax_variables
from r3d_jax.models import create_model, densenet, torch_layouts

CLIP_SHAPE = (2, 8, 32, 32, 3)
# DenseNet's transitions need 16 frames to keep a frame after the third one.
DENSENET_CLIP_SHAPE = (2, 16, 32, 32, 3)
# Train mode needs more than 2 values per channel at the last stage (1x1x1 at 8x32x32) for
# batch statistics that are well conditioned: with 2, the three BatchNorms of a bottleneck
# amplify float64 rounding to ~1e-6 of the logits.
TRAIN_CLIP_SHAPE = (4, 8, 32, 32, 3)
DENSENET_TRAIN_CLIP_SHAPE = (4, 16, 32, 32, 3)
# On a CPU, XLA compiles float64 convs to loops (it hands only float32 and float16 ones to its
# library), and DenseNet-121's 58 dense layers take a minute to compile with their gradients:
# the gradient test keeps its modules with two dense layers per block (the eval test has them
# all).
TRAIN_DENSE_BLOCKS = (2, 2, 2, 2)


def make_config(arch='resnet', depth=18, shortcut='B', num_classes=5, **model_fields):
    config = defaults.get_config()
    config.model.update(
        arch=arch, depth=depth, shortcut=shortcut, num_classes=num_classes, dtype='float32'
    )
    config.model.update(model_fields)
    # Unit-scale inputs keep logits and gradients of random networks O(1).
    config.input.std = defaults.REFERENCE_STD
    return config


def random_torch_model(config, seed=0):
    """The PyTorch layout of `config` with random weights and random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = torch_layouts.from_config(config.model)
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


def eval_logits(config, torch_model, clips):
    """(JAX logits, PyTorch logits, conversion report) in eval mode."""
    with torch.no_grad():
        expected = torch_model.eval()(torch_input(clips, config)).numpy()
    variables, report = torch_to_flax_variables(torch_model.state_dict(), config)
    model = create_model(config)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, clips)
    assert logits.dtype == jnp.float32
    return logits, expected, report


@pytest.mark.parametrize(
    'arch, depth, shortcut, model_fields, clip_shape',
    [
        ('resnet', 18, 'A', {}, CLIP_SHAPE),
        ('resnet', 18, 'B', {}, CLIP_SHAPE),
        ('resnet', 18, 'B', {'stem_conv': 'direct'}, CLIP_SHAPE),
        ('resnet', 50, 'B', {}, CLIP_SHAPE),
        ('preresnet', 18, 'A', {}, CLIP_SHAPE),
        ('preresnet', 50, 'B', {}, CLIP_SHAPE),
        ('wideresnet', 50, 'B', {}, CLIP_SHAPE),
        ('resnext', 50, 'B', {}, CLIP_SHAPE),
        ('densenet', 121, 'B', {}, DENSENET_CLIP_SHAPE),
        ('r3d', 18, 'B', {}, CLIP_SHAPE),
        ('mc3', 18, 'B', {}, CLIP_SHAPE),
        ('r2plus1d', 18, 'B', {}, CLIP_SHAPE),
    ],
)
def test_eval_logits_match_pytorch(arch, depth, shortcut, model_fields, clip_shape):
    config = make_config(arch, depth, shortcut, **model_fields)
    clips = random_clips(0, clip_shape)
    logits, expected, report = eval_logits(config, random_torch_model(config), clips)

    assert report.layout == ('torchvision' if arch in ('r3d', 'mc3', 'r2plus1d') else 'reference')
    assert not report.head_reinitialised
    assert np.abs(expected).max() > 1e-2  # The comparison is not between two near-zero outputs.
    assert_close(logits, expected)


def test_resnext101_weights_classify_64_frame_clips_like_pytorch():
    """The released resnext-101-64f models are ResNeXt-101s fed 64 frames: same weights."""
    config = make_config('resnext', 101, cardinality=8)
    logits, expected, _ = eval_logits(
        config, random_torch_model(config), random_clips(3, (1, 64, 32, 32, 3))
    )
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
    config = make_config('resnet', 18, 'B')
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
    'arch, depth, shortcut, model_fields, clip_shape',
    [
        ('resnet', 18, 'B', {}, CLIP_SHAPE),
        ('resnet', 10, 'A', {'shortcut_a_stop_gradient': True}, CLIP_SHAPE),
        ('resnet', 10, 'A', {'shortcut_a_stop_gradient': False}, CLIP_SHAPE),
        ('preresnet', 18, 'B', {}, CLIP_SHAPE),
        # Narrower than released (the layout is the same) to keep float64 on a CPU quick.
        ('wideresnet', 50, 'B', {'widen_factor': 1}, TRAIN_CLIP_SHAPE),
        ('resnext', 50, 'B', {'cardinality': 8}, TRAIN_CLIP_SHAPE),
        ('densenet', 121, 'B', {'growth_rate': 8}, DENSENET_TRAIN_CLIP_SHAPE),
        # Depth 10 has the blocks of depth 18 (with and without downsampling), once per stage.
        ('r3d', 10, 'B', {}, CLIP_SHAPE),
        ('mc3', 10, 'B', {}, CLIP_SHAPE),
        ('r2plus1d', 10, 'B', {}, CLIP_SHAPE),
    ],
)
def test_train_mode_gradients_match_pytorch(
    arch, depth, shortcut, model_fields, clip_shape, monkeypatch
):
    """Compared in float64 on both sides.

    Gradients of ReLU networks jump where an activation crosses zero, and fp32 rounding (about
    1e-6 relative) flips a few of the ~10^6 activations of a clip batch between any two
    implementations, each flip moving whole gradient tensors by up to a few percent. In
    float64 no activation lies that close to zero, so gradients can be compared tightly.
    """
    if arch == 'densenet':
        for table in (densenet.ARCHITECTURES, torch_layouts.DENSE_BLOCKS):
            monkeypatch.setitem(table, depth, TRAIN_DENSE_BLOCKS)
    config = make_config(arch, depth, shortcut, **model_fields)
    torch_model = random_torch_model(config).double()
    clips = random_clips(1, clip_shape)
    weights = np.random.default_rng(2).normal(size=(clip_shape[0], 5))
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
        stop_gradient = model_fields['shortcut_a_stop_gradient']
        other = make_config(arch, depth, 'A', shortcut_a_stop_gradient=not stop_gradient)
        _, other_grads = torch_train_step(
            random_torch_model(other).double(), clips, config, weights
        )
        other_stem = other_grads['conv1.weight'].numpy().transpose(2, 3, 4, 1, 0)
        stem = np.asarray(grads['conv1']['kernel'])
        assert np.abs(stem - other_stem).max() > 1e-2 * np.abs(other_stem).max()
