"""2D reformulations of 3D convs and of the stem conv: the native conv's values and gradients."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from r3d_jax import defaults
from r3d_jax.models import create_model, init_variables
from r3d_jax.models.conv_formulations import (
    CHANNELS_LAST_3D,
    CONV_FORMULATIONS,
    STEM_CONV_FORMULATIONS,
    folded_taps_2d,
    stem_conv_direct,
    temporal_taps_2d,
)

REFORMULATIONS = {name: f for name, f in CONV_FORMULATIONS.items() if name != 'native'}
FLOAT32_TOLERANCE = 2e-6  # Of the largest magnitude: only the order of summation differs.
FLOAT64_TOLERANCE = 1e-12

# (input [N, T, H, W, C], kernel [kt, kh, kw], out features, strides, padding, groups): odd
# sizes, both strides, every padding form the models use, torchvision's (2+1)D kernels, groups.
CONV_CASES = {
    '3x3x3_stride1': ((2, 5, 7, 6, 4), (3, 3, 3), 6, (1, 1, 1), ((1, 1),) * 3, 1),
    '3x3x3_stride2': ((2, 5, 7, 6, 4), (3, 3, 3), 6, (2, 2, 2), ((1, 1),) * 3, 1),
    '3x3x3_stride2_even': ((1, 4, 8, 8, 3), (3, 3, 3), 5, (2, 2, 2), ((1, 1),) * 3, 1),
    '1x1x1_stride1_same': ((2, 3, 5, 5, 4), (1, 1, 1), 8, (1, 1, 1), 'SAME', 1),
    '1x1x1_stride2_same': ((2, 5, 7, 6, 4), (1, 1, 1), 8, (2, 2, 2), 'SAME', 1),
    '1x3x3_spatial': ((1, 3, 7, 5, 4), (1, 3, 3), 6, (1, 2, 2), ((0, 0), (1, 1), (1, 1)), 1),
    '3x1x1_temporal': ((1, 6, 5, 5, 4), (3, 1, 1), 6, (2, 1, 1), ((1, 1), (0, 0), (0, 0)), 1),
    'asymmetric_valid_t': ((1, 7, 6, 7, 3), (3, 2, 3), 4, (2, 1, 2), ((2, 0), (0, 1), (1, 2)), 1),
    'valid': ((1, 5, 6, 6, 3), (3, 3, 3), 4, (1, 1, 1), 'VALID', 1),
    'groups_2': ((2, 4, 5, 5, 6), (3, 3, 3), 4, (1, 1, 1), ((1, 1),) * 3, 2),
    'groups_4_stride2': ((1, 5, 7, 7, 8), (3, 3, 3), 8, (2, 2, 2), ((1, 1),) * 3, 4),
}


def random_array(shape, seed, dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def conv_operands(case, dtype=np.float32):
    input_shape, window, features, strides, padding, groups = CONV_CASES[case]
    x = random_array(input_shape, 0, dtype)
    kernel = random_array((*window, input_shape[-1] // groups, features), 1, dtype)
    return x, kernel, dict(window_strides=strides, padding=padding, feature_group_count=groups)


def values_and_gradients(conv, x, kernel, **conv_args):
    """conv(x, kernel), and the gradients w.r.t. x and kernel of a random cotangent."""
    apply = functools.partial(conv, dimension_numbers=CHANNELS_LAST_3D, **conv_args)
    return _with_gradients(apply, x, kernel)


def _with_gradients(apply, x, kernel):
    """apply(x, kernel) and its vjp of a random cotangent, compiled at once (op by op is slower)."""
    out = jax.eval_shape(apply, x, kernel)
    cotangent = random_array(out.shape, 2, out.dtype)

    @jax.jit
    def run(x, kernel, cotangent):
        out, vjp = jax.vjp(apply, x, kernel)
        return (out, *vjp(cotangent))

    return run(x, kernel, cotangent)


def assert_equal_to_rounding(actual, expected, tolerance):
    """max |actual - expected| within `tolerance` of the largest |expected|, shapes equal."""
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        scale = float(np.max(np.abs(e)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=tolerance * scale)


@functools.cache
def native_values_and_gradients(case):
    x, kernel, conv_args = conv_operands(case)
    return values_and_gradients(lax.conv_general_dilated, x, kernel, **conv_args)


@pytest.mark.parametrize('formulation', sorted(REFORMULATIONS))
@pytest.mark.parametrize('case', sorted(CONV_CASES))
def test_reformulated_conv_gives_the_native_values_and_gradients(case, formulation):
    x, kernel, conv_args = conv_operands(case)
    expected = native_values_and_gradients(case)
    actual = values_and_gradients(REFORMULATIONS[formulation], x, kernel, **conv_args)
    assert_equal_to_rounding(actual, expected, FLOAT32_TOLERANCE)


@pytest.mark.parametrize('formulation', sorted(REFORMULATIONS))
@pytest.mark.parametrize('case', ['3x3x3_stride2', 'asymmetric_valid_t', 'groups_4_stride2'])
def test_reformulated_conv_in_float64_agrees_to_1e_12(case, formulation):
    with jax.enable_x64(True):
        x, kernel, conv_args = conv_operands(case, np.float64)
        expected = values_and_gradients(lax.conv_general_dilated, x, kernel, **conv_args)
        actual = values_and_gradients(REFORMULATIONS[formulation], x, kernel, **conv_args)
        assert actual[0].dtype == jnp.float64
        assert_equal_to_rounding(actual, expected, FLOAT64_TOLERANCE)


@pytest.mark.parametrize('formulation', sorted(REFORMULATIONS))
def test_bfloat16_taps_keep_the_dtype_and_stay_within_bfloat16_rounding(formulation):
    x, kernel, conv_args = conv_operands('3x3x3_stride1')
    exact = lax.conv_general_dilated(x, kernel, dimension_numbers=CHANNELS_LAST_3D, **conv_args)
    out = REFORMULATIONS[formulation](
        x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16),
        dimension_numbers=CHANNELS_LAST_3D, **conv_args,
    )
    assert out.dtype == jnp.bfloat16
    # Inputs rounded to bfloat16 (8 bits) and the taps' sum: a few parts in 256.
    scale = float(np.max(np.abs(exact)))
    np.testing.assert_allclose(np.asarray(out, np.float32), exact, rtol=0, atol=0.03 * scale)


@pytest.mark.parametrize('formulation', sorted(REFORMULATIONS))
def test_flax_conv_takes_a_reformulation_with_the_same_parameters(formulation):
    x = random_array((2, 5, 7, 6, 4), 0)
    native = nn.Conv(6, (3, 3, 3), strides=(2, 2, 2), padding='SAME', use_bias=False)
    reformulated = native.clone(conv_general_dilated=REFORMULATIONS[formulation])
    variables = native.init(jax.random.key(0), x)
    assert jax.tree.structure(reformulated.init(jax.random.key(0), x)) == jax.tree.structure(
        variables
    )
    assert_equal_to_rounding(
        [reformulated.apply(variables, x)], [native.apply(variables, x)], FLOAT32_TOLERANCE
    )


@pytest.mark.parametrize(
    'conv_args, message',
    [
        (dict(dimension_numbers=('NCDHW', 'OIDHW', 'NCDHW')), 'channels-last'),
        (dict(rhs_dilation=(2, 1, 1)), 'rhs_dilation'),
        (dict(padding=((-1, 0), (1, 1), (1, 1))), 'non-negative padding'),
    ],
)
def test_unsupported_conv_arguments_are_rejected_by_name(conv_args, message):
    x, kernel, _ = conv_operands('3x3x3_stride1')
    args = dict(window_strides=(1, 1, 1), padding=((1, 1),) * 3, dimension_numbers=CHANNELS_LAST_3D)
    with pytest.raises(ValueError, match=message):
        temporal_taps_2d(x, kernel, **{**args, **conv_args})
    with pytest.raises(ValueError, match=message):
        folded_taps_2d(x, kernel, **{**args, **conv_args})


def stem_values_and_gradients(stem_conv, x, kernel, temporal_stride):
    return _with_gradients(lambda x, kernel: stem_conv(x, kernel, temporal_stride), x, kernel)


# (clip [N, T, H, W, 3], temporal kernel, temporal stride): the reference stem (7, stride 1 and
# 2), torchvision's (3), odd and even frame sides.
STEM_CASES = [((1, 5, 9, 11, 3), 7, 1), ((2, 6, 10, 8, 3), 7, 2), ((1, 4, 7, 6, 3), 3, 1)]


@pytest.mark.parametrize('stem_conv', sorted(STEM_CONV_FORMULATIONS))
@pytest.mark.parametrize('clip_shape, temporal_kernel, temporal_stride', STEM_CASES)
def test_stem_conv_variants_give_the_direct_conv_values_and_kernel_gradient(
    stem_conv, clip_shape, temporal_kernel, temporal_stride
):
    x = random_array(clip_shape, 0)
    kernel = random_array((temporal_kernel, 7, 7, 3, 8), 1)
    expected = stem_values_and_gradients(stem_conv_direct, x, kernel, temporal_stride)
    actual = stem_values_and_gradients(
        STEM_CONV_FORMULATIONS[stem_conv], x, kernel, temporal_stride
    )
    assert_equal_to_rounding(actual, expected, FLOAT32_TOLERANCE)


@pytest.mark.parametrize('stem_conv', sorted(STEM_CONV_FORMULATIONS))
def test_stem_conv_variants_in_float64_agree_to_1e_12(stem_conv):
    with jax.enable_x64(True):
        x = random_array((1, 5, 9, 11, 3), 0, np.float64)
        kernel = random_array((7, 7, 7, 3, 8), 1, np.float64)
        expected = stem_values_and_gradients(stem_conv_direct, x, kernel, 2)
        actual = stem_values_and_gradients(STEM_CONV_FORMULATIONS[stem_conv], x, kernel, 2)
        assert_equal_to_rounding(actual, expected, FLOAT64_TOLERANCE)


def test_padded_stem_variants_feed_convs_channel_multiples_of_8():
    x, kernel = random_array((1, 4, 8, 8, 3), 0), random_array((7, 7, 7, 3, 8), 1)
    for name in ('space_to_depth_padded', 'space_to_depth_temporal_taps', 'space_to_depth_folded'):
        stem_conv = functools.partial(STEM_CONV_FORMULATIONS[name], temporal_stride=1)
        jaxpr = jax.make_jaxpr(stem_conv)(x, kernel)
        channels = [
            equation.invars[0].aval.shape[-1]
            for equation in jaxpr.jaxpr.eqns
            if equation.primitive.name == 'conv_general_dilated'
        ]
        assert channels and all(c % 8 == 0 for c in channels), (name, channels)


def model_config(dtype, **model_fields):
    config = defaults.get_config()
    config.model.update(depth=10, shortcut='B', num_classes=3, dtype=dtype, **model_fields)
    return config


MODEL_CLIPS = (2, 3, 11, 9, 3)


@functools.cache
def model_variables():
    return init_variables(create_model(model_config('float32')), jax.random.key(0), MODEL_CLIPS)


def model_logits_and_gradients(config, train, dtype):
    """Logits and the parameters' gradients of the cross-entropy of fixed clips."""
    model = create_model(config)
    variables = jax.tree.map(lambda v: jnp.asarray(v, dtype), model_variables())
    clips = jnp.asarray(np.random.default_rng(0).integers(0, 256, MODEL_CLIPS), jnp.uint8)
    labels = jnp.asarray([0, 2])

    @jax.jit
    def run(params):
        def loss(params):
            logits, _ = model.apply(
                {'params': params, 'batch_stats': variables['batch_stats']}, clips, train=train,
                mutable=['batch_stats'],
            )
            log_probabilities = jax.nn.log_softmax(logits)
            return -jnp.take_along_axis(log_probabilities, labels[:, None], 1).mean(), logits

        return jax.grad(loss, has_aux=True)(params)

    gradients, logits = run(variables['params'])
    return [logits, *jax.tree.leaves(gradients)]


# Between them, each formulation in every stage and the stem's 2D variants (padded to 16
# channels, as 'space_to_depth_padded' is), with shortcut B's 1x1x1 convs: one is checked in
# float32, the other in float64 (each model compiles for long on a CPU).
MODEL_CHOICES = [
    dict(
        stem_conv='space_to_depth_temporal_taps',
        conv_formulation=('temporal_taps_2d', 'folded_taps_2d') * 2,
    ),
    dict(
        stem_conv='space_to_depth_folded',
        conv_formulation=('folded_taps_2d', 'temporal_taps_2d') * 2,
    ),
]


def test_the_model_gives_equal_logits_and_gradients_with_every_formulation():
    # Evaluation mode: training mode's BatchNorm over a tiny batch divides by deviations that
    # amplify the order-of-summation differences (checked in float64 below).
    expected = model_logits_and_gradients(model_config('float32'), False, jnp.float32)
    choices = MODEL_CHOICES[0]
    actual = model_logits_and_gradients(model_config('float32', **choices), False, jnp.float32)
    assert_equal_to_rounding(actual, expected, 5 * FLOAT32_TOLERANCE)


def test_the_model_in_float64_training_mode_agrees_to_1e_10_with_every_formulation():
    with jax.enable_x64(True):
        expected = model_logits_and_gradients(model_config('float64'), True, jnp.float64)
        choices = MODEL_CHOICES[1]
        actual = model_logits_and_gradients(model_config('float64', **choices), True, jnp.float64)
        assert_equal_to_rounding(actual, expected, 1e-10)


@pytest.mark.parametrize(
    'field, value',
    [('conv_formulation', ('native', 'native', 'native')),
     ('conv_formulation', ('native', 'native', 'native', 'fft')),
     ('stem_conv', 'space_to_depth_16')],
)
def test_unknown_formulations_are_config_errors_naming_the_field(field, value):
    with pytest.raises(defaults.ConfigError, match=f'config.model.{field}'):
        create_model(model_config('float32', **{field: value}))
