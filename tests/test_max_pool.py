"""The max pool with saved indices equals Flax's max pool, values and gradients, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r3d_jax.models.max_pool import max_pool_3d


def flax_pool(window, strides, padding):
    return lambda x: nn.max_pool(x, window, strides=strides, padding=[(p, p) for p in padding])


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize(
    'shape, window, strides, padding',
    [
        ((2, 8, 14, 15, 4), (3, 3, 3), (2, 2, 2), (1, 1, 1)),  # the stem's pool, odd width
        ((1, 5, 7, 6, 3), (3, 3, 3), (2, 2, 2), (1, 1, 1)),
        ((2, 4, 9, 9, 2), (1, 3, 3), (1, 2, 2), (0, 1, 1)),
        ((1, 6, 8, 8, 2), (2, 2, 2), (2, 2, 2), (0, 0, 0)),
    ],
)
def test_values_and_gradients_equal_flax_max_pool_with_ties(dtype, shape, window, strides, padding):
    rng = np.random.default_rng(0)
    # Values from {0, 1, 2}: most windows hold several maxima, as ReLU zeros do in the network.
    x = jnp.asarray(rng.integers(0, 3, size=shape), dtype)
    expected, expected_vjp = jax.vjp(flax_pool(window, strides, padding), x)
    actual, actual_vjp = jax.vjp(lambda x: max_pool_3d(x, window, strides, padding), x)
    np.testing.assert_array_equal(actual, expected)
    assert actual.dtype == expected.dtype
    # Small-integer cotangents sum exactly in any order, so equal gradients mean equal routing.
    cotangent = jnp.asarray(rng.integers(-4, 5, size=expected.shape), dtype)
    np.testing.assert_array_equal(actual_vjp(cotangent)[0], expected_vjp(cotangent)[0])
    np.testing.assert_array_equal(
        jax.jit(lambda x: max_pool_3d(x, window, strides, padding))(x), expected
    )


def test_a_window_wider_than_an_int8_index_is_refused():
    with pytest.raises(ValueError, match='at most 127 window entries'):
        max_pool_3d(jnp.zeros((1, 8, 8, 8, 1)), (8, 8, 8), (1, 1, 1), (0, 0, 0))
