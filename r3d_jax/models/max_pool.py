"""3D max pooling whose gradient is routed by indices saved in the forward pass.

XLA differentiates a max pool with select-and-scatter, which searches every window again in
the backward pass and scatters with atomic adds. Here the forward pass records which window
entry won (one int8 per output) and the backward pass sends each output's gradient to that
entry: a gather-style loop with no atomics. The winner is the first maximum in window order,
the entry select-and-scatter picks, so values and gradients are exactly those of `nn.max_pool`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Triple = tuple[int, int, int]


def _padded(x: jax.Array, padding: Triple) -> jax.Array:
    pads = ((0, 0, 0), *((p, p, 0) for p in padding), (0, 0, 0))
    return lax.pad(x, jnp.array(-jnp.inf, x.dtype), pads)


def _output_shape(shape: Sequence[int], window: Triple, strides: Triple, padding: Triple) -> Triple:
    return tuple(  # type: ignore[return-value]
        (size + 2 * p - k) // s + 1
        for size, k, s, p in zip(shape[1:4], window, strides, padding, strict=True)
    )


def _window_entries(
    x_padded: jax.Array, window: Triple, strides: Triple, out_shape: Triple
) -> list[jax.Array]:
    """For each window offset in row-major order, the entries it contributes to every output."""
    entries = []
    for offset in itertools.product(*(range(k) for k in window)):
        start = (0, *offset, 0)
        limit = (
            x_padded.shape[0],
            *(o + s * (n - 1) + 1 for o, s, n in zip(offset, strides, out_shape, strict=True)),
            x_padded.shape[4],
        )
        entries.append(lax.slice(x_padded, start, limit, (1, *strides, 1)))
    return entries


def _pool(x: jax.Array, window: Triple, strides: Triple, padding: Triple) -> jax.Array:
    return lax.reduce_window(
        x,
        jnp.array(-jnp.inf, x.dtype),
        lax.max,
        (1, *window, 1),
        (1, *strides, 1),
        ((0, 0), *((p, p) for p in padding), (0, 0)),
    )


def _pool_forward(
    x: jax.Array, window: Triple, strides: Triple, padding: Triple
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    out_shape = _output_shape(x.shape, window, strides, padding)
    entries = _window_entries(_padded(x, padding), window, strides, out_shape)
    best, winner = entries[0], jnp.zeros(entries[0].shape, jnp.int8)
    for index, entry in enumerate(entries[1:], start=1):
        # Strictly greater: ties keep the earlier entry, as select-and-scatter does.
        better = entry > best
        best = jnp.where(better, entry, best)
        winner = jnp.where(better, jnp.int8(index), winner)
    # An empty array with the input's trailing shape: the backward pass needs only its shape.
    input_shape = jnp.zeros((0, *x.shape[1:]), x.dtype)
    return best, (winner, input_shape)


def _pool_backward(
    window: Triple,
    strides: Triple,
    padding: Triple,
    residuals: tuple[jax.Array, jax.Array],
    cotangent: jax.Array,
) -> tuple[jax.Array]:
    winner, input_shape = residuals
    padded_sizes = [size + 2 * p for size, p in zip(input_shape.shape[1:4], padding, strict=True)]
    out_shape = winner.shape[1:4]
    # Up to 8 outputs share an input entry (window 3, stride 2): sum them in float32 at least.
    accumulation = jnp.promote_types(cotangent.dtype, jnp.float32)
    zero = jnp.zeros((), accumulation)
    gradient = None
    for index, offset in enumerate(itertools.product(*(range(k) for k in window))):
        routed = jnp.where(winner == index, cotangent.astype(accumulation), zero)
        # Place output i's gradient at padded input offset + stride * i.
        pads = [(0, 0, 0)]
        for o, s, n, size in zip(offset, strides, out_shape, padded_sizes, strict=True):
            pads.append((o, size - (o + s * (n - 1) + 1), s - 1))
        pads.append((0, 0, 0))
        placed = lax.pad(routed, zero, pads)
        gradient = placed if gradient is None else gradient + placed
    assert gradient is not None
    starts = (0, *padding, 0)
    limits = (
        gradient.shape[0],
        *(p + size for p, size in zip(padding, input_shape.shape[1:4], strict=True)),
        gradient.shape[4],
    )
    return (lax.slice(gradient, starts, limits).astype(cotangent.dtype),)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x: jax.Array, window: Triple, strides: Triple, padding: Triple) -> jax.Array:
    return _pool(x, window, strides, padding)


_max_pool.defvjp(_pool_forward, _pool_backward)


def max_pool_3d(x: jax.Array, window: Triple, strides: Triple, padding: Triple) -> jax.Array:
    """Max pool of x [N, T, H, W, C] with symmetric `padding`; see the module docstring."""
    if x.ndim != 5 or np.prod(window) > np.iinfo(np.int8).max:
        raise ValueError(
            'max_pool_3d takes [N, T, H, W, C] and at most 127 window entries; got '
            f'{x.shape} and window {window}.'
        )
    return _max_pool(x, tuple(window), tuple(strides), tuple(padding))
