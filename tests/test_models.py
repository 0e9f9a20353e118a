"""The 3D ResNet family and what every family shares: shapes, dtypes, normalisation, stems."""

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from r3d_jax import defaults
from r3d_jax.models import create_model, init_variables
from r3d_jax.models.conv_formulations import stem_conv_direct, stem_conv_space_to_depth
from r3d_jax.models.layers import Shortcut
from r3d_jax.models.resnet import ARCHITECTURES, ResNet3D

SMALL_CLIP = (1, 8, 32, 32, 3)


def make_config(depth=10, shortcut='B', arch='resnet', num_classes=3, **model_fields):
    config = defaults.get_config()
    config.model.update(
        arch=arch, depth=depth, shortcut=shortcut, num_classes=num_classes, dtype='float32'
    )
    config.model.update(model_fields)
    return config


def abstract_variables(model, clip_shape=SMALL_CLIP):
    return jax.eval_shape(lambda: init_variables(model, jax.random.key(0), clip_shape))


def count_parameters(params):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def jit_apply(model, **apply_kwargs):
    """model.apply(variables, clips, **apply_kwargs), compiled once (op by op is slower)."""
    return jax.jit(lambda variables, clips: model.apply(variables, clips, **apply_kwargs))


def random_clips(shape=SMALL_CLIP, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


@pytest.fixture(scope='module')
def resnet10_variables():
    """Initial ResNet-10 variables (3 classes, shortcut B); they fit every clip size."""
    return init_variables(create_model(make_config(10)), jax.random.key(0), SMALL_CLIP)


def test_resnet10_runs_in_both_modes_with_finite_logits(resnet10_variables):
    model = create_model(make_config(10))
    variables = resnet10_variables
    clips = random_clips((2, *SMALL_CLIP[1:]))
    eval_logits = jit_apply(model, train=False)(variables, clips)
    train_logits, updates = jit_apply(model, train=True, mutable=['batch_stats'])(variables, clips)
    assert eval_logits.shape == train_logits.shape == (2, 3)
    assert np.isfinite(eval_logits).all() and np.isfinite(train_logits).all()
    assert jax.tree.structure(updates['batch_stats']) == jax.tree.structure(
        variables['batch_stats']
    )


def stage_shapes(config, clip_shape):
    """Output shapes [T, H, W, C] of the stem conv and of each stage, without computing."""
    model = create_model(config)
    variables = abstract_variables(model, clip_shape)
    _, state = jax.eval_shape(
        lambda v: model.apply(
            v, jnp.zeros(clip_shape, jnp.uint8), train=False, capture_intermediates=True
        ),
        variables,
    )
    intermediates = state['intermediates']
    _, blocks = ARCHITECTURES[config.model.depth]
    names = ['conv1'] + [f'layer{stage + 1}_{n - 1}' for stage, n in enumerate(blocks)]
    return [intermediates[name]['__call__'][0].shape[1:] for name in names]


def test_feature_maps_of_16x112x112_clips_match_the_reference():
    shapes = stage_shapes(make_config(18), (1, 16, 112, 112, 3))
    # Stem 16x56x56; the max-pool halves T, H, W before layer1.
    assert shapes == [
        (16, 56, 56, 64),
        (8, 28, 28, 64),
        (4, 14, 14, 128),
        (2, 7, 7, 256),
        (1, 4, 4, 512),
    ]


def test_torchvision_r3d_stem_keeps_frames_and_skips_max_pool():
    # The reference-only stem fields are ignored by torchvision's fixed stems.
    config = make_config(18, arch='r3d', stem_temporal_kernel=5, stem_temporal_stride=2)
    model = create_model(config)
    assert not hasattr(model, 'stem_temporal_kernel') and not hasattr(model, 'stem_max_pool')
    shapes = stage_shapes(config, (1, 16, 112, 112, 3))
    assert shapes == [
        (16, 56, 56, 64),
        (16, 56, 56, 64),
        (8, 28, 28, 128),
        (4, 14, 14, 256),
        (2, 7, 7, 512),
    ]
    stem_kernel = abstract_variables(model)['params']['conv1']['kernel']
    assert stem_kernel.shape == (3, 7, 7, 3, 64)


def test_reference_stem_temporal_stride_and_kernel_are_configurable():
    config = make_config(18, stem_temporal_kernel=3, stem_temporal_stride=2, stem_max_pool=False)
    shapes = stage_shapes(config, (1, 32, 64, 64, 3))
    assert shapes[0] == (16, 32, 32, 64) and shapes[1] == (16, 32, 32, 64)
    kernel = abstract_variables(create_model(config))['params']['conv1']['kernel']
    assert kernel.shape == (3, 7, 7, 3, 64)


@pytest.mark.parametrize(
    'shortcut, arch, num_classes, millions',
    [
        ('B', 'resnet', 101, 33.26),
        ('A', 'resnet', 101, 33.08),
        ('B', 'r3d', 400, 33.37),
    ],
)
def test_resnet18_parameter_counts_match_published_figures(shortcut, arch, num_classes, millions):
    config = make_config(18, shortcut, arch, num_classes=num_classes)
    params = abstract_variables(create_model(config))['params']
    assert round(count_parameters(params) / 1e6, 2) == millions


def test_shortcut_b_has_downsample_parameters_and_shortcut_a_has_none():
    params_b = abstract_variables(create_model(make_config(18, 'B')))['params']
    params_a = abstract_variables(create_model(make_config(18, 'A')))['params']
    with_downsample = {name for name, block in params_b.items() if 'downsample' in block}
    assert with_downsample == {'layer2_0', 'layer3_0', 'layer4_0'}
    blocks_a = [block for name, block in params_a.items() if name.startswith('layer')]
    assert blocks_a and not any('downsample' in block for block in blocks_a)


@pytest.mark.parametrize('stop_gradient', [True, False])
def test_shortcut_a_subsamples_zero_pads_and_optionally_stops_gradients(stop_gradient):
    shortcut = Shortcut(6, (2, 2, 2), 'A', stop_gradient, convs=None, norm=None)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 5, 4, 4)), jnp.float32)
    y = shortcut.apply({}, x)
    np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 4:], 0.0)
    assert y.shape == (1, 2, 3, 2, 6)
    gradient = jax.grad(lambda x: shortcut.apply({}, x).sum())(x)
    assert (np.abs(gradient).sum() == 0) == stop_gradient


def test_initialisation_follows_the_reference(resnet10_variables):
    variables = resnet10_variables
    params, stats = variables['params'], variables['batch_stats']
    # Kaiming normal, fan_out, ReLU gain.
    kernel = np.asarray(params['layer4_0']['conv2']['kernel'])
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (27 * 512)), rtol=0.02)
    stem = np.asarray(params['conv1']['kernel'])
    np.testing.assert_allclose(stem.std(), np.sqrt(2 / (343 * 64)), rtol=0.02)
    # PyTorch nn.Linear: U(-1/sqrt(512), 1/sqrt(512)) for weight and bias.
    bound = 1 / np.sqrt(512)
    fc_kernel = np.asarray(params['fc']['kernel'])
    assert np.abs(fc_kernel).max() <= bound and np.abs(params['fc']['bias']).max() <= bound
    np.testing.assert_allclose(fc_kernel.std(), bound / np.sqrt(3), rtol=0.05)
    np.testing.assert_array_equal(params['layer2_0']['bn1']['scale'], 1.0)
    np.testing.assert_array_equal(params['layer2_0']['bn1']['bias'], 0.0)
    np.testing.assert_array_equal(stats['bn1']['mean'], 0.0)
    np.testing.assert_array_equal(stats['bn1']['var'], 1.0)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


def test_model_normalises_uint8_and_float_clips_alike_from_config_input(resnet10_variables):
    config = make_config(10)
    config.input.value_scale = 1 / 255
    config.input.mean = (0.4345, 0.4051, 0.3775)
    config.input.std = (0.2768, 0.2713, 0.2737)
    model = create_model(config)
    variables = resnet10_variables
    clips = random_clips()
    apply = jit_apply(model, train=False)
    from_uint8 = apply(variables, clips)
    from_float = apply(variables, clips.astype(np.float32))
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6, atol=1e-6)

    identity = create_model(make_config(10))  # value_scale 1, mean REFERENCE_MEAN, std 1.
    identity = identity.clone(mean=(0.0, 0.0, 0.0))
    normalised = (clips / 255 - np.asarray(config.input.mean)) / np.asarray(config.input.std)
    by_hand = jit_apply(identity, train=False)(variables, normalised.astype(np.float32))
    np.testing.assert_allclose(from_uint8, by_hand, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    'height, width, temporal_kernel, temporal_stride',
    [(32, 32, 7, 1), (33, 35, 7, 1), (31, 32, 3, 1), (16, 17, 7, 2), (16, 16, 3, 2)],
)
def test_space_to_depth_stem_equals_direct_conv(height, width, temporal_kernel, temporal_stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, height, width, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(temporal_kernel, 7, 7, 3, 16)), jnp.float32)
    cotangent_shape = stem_conv_direct(x, kernel, temporal_stride).shape
    cotangent = jnp.asarray(rng.normal(size=cotangent_shape), jnp.float32)

    def loss(conv, x, kernel):
        return jnp.sum(conv(x, kernel, temporal_stride) * cotangent)

    direct = stem_conv_direct(x, kernel, temporal_stride)
    fast = stem_conv_space_to_depth(x, kernel, temporal_stride)
    assert fast.shape == direct.shape
    np.testing.assert_allclose(fast, direct, rtol=1e-5, atol=1e-4)
    grads_direct = jax.grad(functools.partial(loss, stem_conv_direct), argnums=(0, 1))(x, kernel)
    grads_fast = jax.grad(functools.partial(loss, stem_conv_space_to_depth), argnums=(0, 1))(
        x, kernel
    )
    for fast_grad, direct_grad in zip(grads_fast, grads_direct, strict=True):
        scale = np.abs(direct_grad).max()
        np.testing.assert_allclose(fast_grad, direct_grad, rtol=0, atol=1e-5 * scale)


def test_space_to_depth_option_keeps_parameters_and_logits(resnet10_variables):
    fast = create_model(make_config(10, stem_conv='space_to_depth'))
    direct = create_model(make_config(10, stem_conv='direct'))
    clip_shape = (2, 8, 33, 30, 3)
    variables = resnet10_variables
    assert jax.tree.map(jnp.shape, abstract_variables(direct, clip_shape)) == jax.tree.map(
        jnp.shape, abstract_variables(fast, clip_shape)
    )
    clips = random_clips(clip_shape)
    np.testing.assert_allclose(
        jit_apply(fast, train=False)(variables, clips),
        jit_apply(direct, train=False)(variables, clips),
        rtol=1e-5,
        atol=1e-5,
    )


def test_bfloat16_computes_in_bfloat16_but_keeps_float32_parameters_statistics_and_logits(
    resnet10_variables,
):
    model = create_model(make_config(10, dtype='bfloat16'))
    fresh = abstract_variables(model)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(fresh))
    variables = resnet10_variables
    clips = random_clips((2, *SMALL_CLIP[1:]))
    logits, state = jit_apply(
        model, train=True, mutable=['batch_stats', 'intermediates'], capture_intermediates=True
    )(variables, clips)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state['batch_stats']))
    assert logits.dtype == jnp.float32
    assert state['intermediates']['layer2_0']['__call__'][0].dtype == jnp.bfloat16

    float32_model = create_model(make_config(10))
    expected = jit_apply(float32_model, train=False)(variables, clips)
    bfloat16_logits = jit_apply(model, train=False)(variables, clips)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(bfloat16_logits, expected, rtol=0, atol=0.05 * scale)


def test_synchronised_batch_norm_uses_the_statistics_of_all_devices(resnet10_variables):
    devices = jax.local_devices()[:4]
    assert len(devices) == 4, 'tests/conftest.py forces 4 CPU devices'
    clip_shape = (4, 8, 48, 48, 3)
    clips = random_clips(clip_shape)
    config = make_config(10, sync_batch_norm=True)
    whole_batch = create_model(config)
    variables = resnet10_variables
    expected, expected_state = jit_apply(whole_batch, train=True, mutable=['batch_stats'])(
        variables, clips
    )

    def per_device_logits(model):
        step = jax.pmap(
            lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']),
            axis_name='batch',
            in_axes=(None, 0),
            devices=devices,
        )
        return step(variables, clips.reshape(4, 1, *clip_shape[1:]))

    synced, synced_state = per_device_logits(create_model(config, bn_axis_name='batch'))
    np.testing.assert_allclose(synced.reshape(4, 3), expected, rtol=1e-4, atol=1e-4)
    first_replica = jax.tree.map(lambda x: x[0], synced_state)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5),
        first_replica,
        expected_state,
    )

    config.model.sync_batch_norm = False
    unsynced_model = create_model(config, bn_axis_name='batch')
    assert unsynced_model.bn_axis_name is None
    unsynced, _ = per_device_logits(unsynced_model)
    assert np.abs(unsynced.reshape(4, 3) - expected).max() > 1e-2


@pytest.mark.parametrize(
    'field, value, message',
    [
        ('depth', 19, r'config\.model\.depth=19 is not one of'),
        ('shortcut', 'C', r"config\.model\.shortcut='C' is not one of"),
        ('arch', 'resnet3d', r"config\.model\.arch='resnet3d' is not one of"),
        ('dtype', 'int8', r"config\.model\.dtype='int8' is not one of"),
        ('num_classes', 0, r'config\.model\.num_classes=0 must be a positive integer'),
        ('stem_temporal_stride', 0, r'config\.model\.stem_temporal_stride=0 must be a positive'),
    ],
)
def test_invalid_model_fields_name_the_config_field(field, value, message):
    config = make_config()
    config.model[field] = value
    with pytest.raises(ValueError, match=message):
        create_model(config)


def test_invalid_normalisation_names_the_config_field():
    config = make_config()
    config.input.mean = (1.0, 2.0)
    with pytest.raises(ValueError, match=r'config\.input\.mean=.* must hold 3 values'):
        create_model(config)


def test_a_model_from_json_metadata_with_lists_is_hashable_and_equals_the_one_from_tuples():
    # Checkpoint metadata comes back from JSON with lists where the config had tuples; jit and
    # the prediction cache key on the module, so it must still hash.
    config = make_config()
    from_json = ml_collections.ConfigDict(json.loads(config.to_json()))
    assert isinstance(from_json.model.conv_formulation, list)
    assert hash(create_model(from_json)) == hash(create_model(config))
    assert create_model(from_json) == create_model(config)


@pytest.mark.parametrize('shape', [(1, 8, 32, 32), (1, 8, 32, 32, 1)])
def test_clips_that_are_not_n_t_h_w_rgb_are_rejected(shape):
    model = ResNet3D(depth=10, num_classes=3)
    with pytest.raises(ValueError, match=r'expects clips \[N, T, H, W, 3\]'):
        jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.uint8), train=False)
        )
