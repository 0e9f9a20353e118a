"""Exact reformulations of 3D convolutions as 2D convolutions, for the kernels GPUs run fastest.

cuDNN's 3D convolutions reach a fraction of the tensor cores' peak where its 2D convolutions come
close to it. A 3D conv with kernel [kt, kh, kw, I, O] (Flax's layout) over clips [N, T, H, W, I]
is a sum over its kt temporal taps of 2D convs of time-shifted frames, so the same values can be
computed by 2D kernels:

- `temporal_taps_2d`: for each tap j, the frames t * st + j (T padded as the 3D conv pads it,
  strided by the temporal stride st) as a batch [N * T_out, H, W, I], through a 2D conv with the
  kernel's slice [kh, kw, I, O]; the kt results are summed in float32 (or wider) and rounded
  once to the output dtype.
- `folded_taps_2d`: the same kt shifted frames concatenated along channels, through one 2D conv
  with kernel [kh, kw, kt * I, O]: no sum at all, at the cost of a kt-times larger input.

Both take `lax.conv_general_dilated`'s arguments (channels-last NDHWC / DHWIO), so the models'
`layers.Conv` (per stage, `config.model.conv_formulation`) and Flax's
`nn.Conv(conv_general_dilated=...)` use them with the same parameters; any strides, paddings
(explicit or 'SAME'/'VALID') and feature groups. Gradients are JAX's own through the slices,
reshapes and 2D convs, so they are those of the same linear map. In float32 they agree with the
native conv up to the order of summation, in float64 to ~1e-12; in bfloat16 each tap's result
is rounded to bfloat16 before the sum.

The stem conv (kernel [kt, 7, 7, 3, O], stride (st, 2, 2)) has variants of its own, all from the
same stored kernel: 'direct', 'space_to_depth' (a [kt, 4, 4, 12, O] conv over 2x2 pixel blocks),
that with its 12 channels zero-padded to 16 (`STEM_CHANNEL_MULTIPLE`; XLA pads only float16
convs itself), and the space-to-depth conv's temporal taps as 2D convs, summed or folded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

CHANNELS_LAST_3D = ('NDHWC', 'DHWIO', 'NDHWC')
CHANNELS_LAST_2D = ('NHWC', 'HWIO', 'NHWC')
# Channel counts the space-to-depth stem variants pad to, as XLA pads float16 convs.
STEM_CHANNEL_MULTIPLE = 8
STEM_SPATIAL_KERNEL = 7

Padding = str | Sequence[tuple[int, int]]


def _conv_geometry(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Sequence[int] | None,
    rhs_dilation: Sequence[int] | None,
    dimension_numbers: Any,
    batch_group_count: int,
) -> list[tuple[int, int]]:
    """The explicit (low, high) padding of each of T, H, W, after checking what is supported."""
    if lhs.ndim != 5 or rhs.ndim != 5:
        raise ValueError(
            f'A 3D conv takes inputs [N, T, H, W, C] and kernels [kt, kh, kw, I, O]; got '
            f'{lhs.shape} and {rhs.shape}.'
        )
    expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, CHANNELS_LAST_3D)
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != expected:
        raise ValueError(
            f'Conv reformulations take channels-last {CHANNELS_LAST_3D}; got {dimension_numbers}.'
        )
    for name, dilation in (('lhs_dilation', lhs_dilation), ('rhs_dilation', rhs_dilation)):
        if dilation is not None and tuple(dilation) != (1, 1, 1):
            raise ValueError(f'Conv reformulations take no {name}; got {dilation}.')
    if batch_group_count != 1:
        raise ValueError(f'Conv reformulations take batch_group_count 1; got {batch_group_count}.')
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(lhs.shape[1:4], rhs.shape[:3], window_strides, padding)
    else:
        pads = [(int(low), int(high)) for low, high in padding]
    if len(pads) != 3 or min(min(pair) for pair in pads) < 0:
        raise ValueError(f'Conv reformulations take 3 non-negative padding pairs; got {padding}.')
    return pads


def _temporal_taps(
    lhs: jax.Array, taps: int, stride: int, padding: tuple[int, int]
) -> tuple[list[jax.Array], int]:
    """For each temporal tap j, the frames [N, T_out, H, W, C] it meets: t * stride + j of the
    padded clip, for t < T_out; and T_out."""
    padded = jnp.pad(lhs, ((0, 0), padding, (0, 0), (0, 0), (0, 0)))
    steps = (padded.shape[1] - taps) // stride + 1
    if steps < 1:
        raise ValueError(
            f'Temporal kernel {taps} does not fit input {lhs.shape} with padding {padding}.'
        )
    frames = [
        lax.slice_in_dim(padded, tap, tap + stride * (steps - 1) + 1, stride, axis=1)
        for tap in range(taps)
    ]
    return frames, steps


def _merge_time(frames: jax.Array) -> jax.Array:
    """[N, T, H, W, C] -> [N * T, H, W, C]."""
    return frames.reshape(-1, *frames.shape[2:])


def _pad_last_axis(x: jax.Array, multiple: int, axis: int = -1) -> jax.Array:
    """`x` with zeros appended along `axis` up to a multiple of `multiple`."""
    size = x.shape[axis]
    pads = [(0, 0)] * x.ndim
    pads[axis] = (0, -size % multiple)
    return jnp.pad(x, pads) if -size % multiple else x


def temporal_taps_2d(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = CHANNELS_LAST_3D,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """The 3D conv as the sum over its temporal taps of 2D convs; see the module docstring."""
    pads = _conv_geometry(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        batch_group_count,
    )
    taps, steps = _temporal_taps(lhs, rhs.shape[0], window_strides[0], pads[0])
    out_dtype = lhs.dtype if preferred_element_type is None else preferred_element_type
    accumulation = jnp.promote_types(out_dtype, jnp.float32)
    total = None
    for tap, frames in enumerate(taps):
        out = lax.conv_general_dilated(
            _merge_time(frames),
            rhs[tap],
            window_strides[1:],
            pads[1:],
            dimension_numbers=CHANNELS_LAST_2D,
            feature_group_count=feature_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        ).astype(accumulation)
        total = out if total is None else total + out
    assert total is not None
    return total.astype(out_dtype).reshape(lhs.shape[0], steps, *total.shape[1:])


def _folded_taps_2d(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    pads: list[tuple[int, int]],
    feature_group_count: int,
    precision: Any,
    preferred_element_type: Any,
    channel_multiple: int,
) -> jax.Array:
    """`folded_taps_2d` on explicit padding, its folded channels zero-padded to a multiple of
    `channel_multiple` (1: none); zero channels meet zero kernel rows, so values are unchanged."""
    kt, kh, kw, group_in, out_features = rhs.shape
    groups = feature_group_count
    taps, steps = _temporal_taps(lhs, kt, window_strides[0], pads[0])
    # [N*T_out, H, W, kt, C] -> channels ordered (group, tap, channel within group), so that
    # each group's kt * I/G folded channels lie together, as grouped convs expect.
    stacked = jnp.stack([_merge_time(frames) for frames in taps], axis=3)
    stacked = stacked.reshape(*stacked.shape[:3], kt, groups, group_in)
    folded = stacked.transpose(0, 1, 2, 4, 3, 5).reshape(*stacked.shape[:3], -1)
    kernel = rhs.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kt * group_in, out_features)
    if channel_multiple > 1:
        if groups != 1:
            raise ValueError('Folded channels are padded only for convs without feature groups.')
        folded = _pad_last_axis(folded, channel_multiple)
        kernel = _pad_last_axis(kernel, channel_multiple, axis=2)
    out = lax.conv_general_dilated(
        folded,
        kernel,
        window_strides[1:],
        pads[1:],
        dimension_numbers=CHANNELS_LAST_2D,
        feature_group_count=groups,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    return out.reshape(lhs.shape[0], steps, *out.shape[1:])


def folded_taps_2d(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = CHANNELS_LAST_3D,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """The 3D conv as one 2D conv over the temporal taps folded into channels."""
    pads = _conv_geometry(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        batch_group_count,
    )
    return _folded_taps_2d(
        lhs, rhs, window_strides, pads, feature_group_count, precision, preferred_element_type, 1
    )


ConvFunction = Callable[..., jax.Array]
# config.model.conv_formulation's choices, each with `lax.conv_general_dilated`'s signature.
CONV_FORMULATIONS: dict[str, ConvFunction] = {
    'native': lax.conv_general_dilated,
    'temporal_taps_2d': temporal_taps_2d,
    'folded_taps_2d': folded_taps_2d,
}


# ---------------------------------------------------------------------------------------------
# The stem conv: kernel [kt, 7, 7, C, O], stride (st, 2, 2), padding (kt // 2, 3, 3).


def _check_stem(x: jax.Array, kernel: jax.Array) -> None:
    _, kh, kw, kc, _ = kernel.shape
    if (kh, kw) != (STEM_SPATIAL_KERNEL, STEM_SPATIAL_KERNEL) or kc != x.shape[-1] or x.ndim != 5:
        raise ValueError(
            f'stem kernel {kernel.shape} does not fit [kt, 7, 7, {x.shape[-1]}, O] for input '
            f'{x.shape}.'
        )


def stem_conv_direct(x: jax.Array, kernel: jax.Array, temporal_stride: int) -> jax.Array:
    """The stem conv as written: kernel [kt, 7, 7, C, O], stride (st, 2, 2), pad (kt//2, 3, 3)."""
    _check_stem(x, kernel)
    temporal_padding = kernel.shape[0] // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(temporal_stride, 2, 2),
        padding=((temporal_padding, temporal_padding), (3, 3), (3, 3)),
        dimension_numbers=CHANNELS_LAST_3D,
    )


def space_to_depth_input(x: jax.Array) -> jax.Array:
    """Clips [N, T, H, W, C], padded by 3 (and one more row/column where H/W is odd), as 2x2
    pixel blocks [N, T, ceil(H/2) + 3, ceil(W/2) + 3, 4C], channels ordered (row, column, C)."""
    n, t, h, w, c = x.shape
    x = jnp.pad(x, ((0, 0), (0, 0), (3, 3 + h % 2), (3, 3 + w % 2), (0, 0)))
    blocks_h, blocks_w = x.shape[2] // 2, x.shape[3] // 2
    x = x.reshape(n, t, blocks_h, 2, blocks_w, 2, c)
    return x.transpose(0, 1, 2, 4, 3, 5, 6).reshape(n, t, blocks_h, blocks_w, 4 * c)


def space_to_depth_kernel(kernel: jax.Array) -> jax.Array:
    """The stem kernel [kt, 7, 7, C, O], given an 8th zero tap, as [kt, 4, 4, 4C, O] over the
    blocks of `space_to_depth_input`."""
    kt, _, _, c, out_features = kernel.shape
    kernel = jnp.pad(kernel, ((0, 0), (0, 1), (0, 1), (0, 0), (0, 0)))
    kernel = kernel.reshape(kt, 4, 2, 4, 2, c, out_features)
    return kernel.transpose(0, 1, 3, 2, 4, 5, 6).reshape(kt, 4, 4, 4 * c, out_features)


def _space_to_depth(
    x: jax.Array, kernel: jax.Array, channel_multiple: int
) -> tuple[jax.Array, jax.Array]:
    _check_stem(x, kernel)
    blocks, block_kernel = space_to_depth_input(x), space_to_depth_kernel(kernel)
    if channel_multiple > 1:
        blocks = _pad_last_axis(blocks, channel_multiple)
        block_kernel = _pad_last_axis(block_kernel, channel_multiple, axis=3)
    return blocks, block_kernel


def _stem_padding(kernel: jax.Array) -> tuple[tuple[int, int], ...]:
    temporal_padding = kernel.shape[0] // 2
    return ((temporal_padding, temporal_padding), (0, 0), (0, 0))


def stem_conv_space_to_depth(x: jax.Array, kernel: jax.Array, temporal_stride: int) -> jax.Array:
    """The same conv as `stem_conv_direct`, computed on 2x2 spatial blocks.

    A 7-tap stride-2 conv equals a 4-tap stride-1 conv over pairs of pixels once the kernel is
    padded to 8 taps with a zero: x [N,T,H,W,C] becomes [N,T,H'/2,W'/2,4C] and the kernel
    [kt,7,7,C,O] becomes [kt,4,4,4C,O]. It applies to every input size: an odd H or W gets one
    more zero row (column) of padding, which only ever meets the kernel's zero tap, so the values
    are exactly the direct conv's, and gradients flow to the stored 7x7 kernel.
    """
    blocks, block_kernel = _space_to_depth(x, kernel, 1)
    return lax.conv_general_dilated(
        blocks, block_kernel, (temporal_stride, 1, 1), _stem_padding(kernel),
        dimension_numbers=CHANNELS_LAST_3D,
    )


def stem_conv_space_to_depth_padded(
    x: jax.Array, kernel: jax.Array, temporal_stride: int
) -> jax.Array:
    """`stem_conv_space_to_depth` with its 4C block channels zero-padded to a multiple of 8."""
    blocks, block_kernel = _space_to_depth(x, kernel, STEM_CHANNEL_MULTIPLE)
    return lax.conv_general_dilated(
        blocks, block_kernel, (temporal_stride, 1, 1), _stem_padding(kernel),
        dimension_numbers=CHANNELS_LAST_3D,
    )


def stem_conv_space_to_depth_temporal_taps(
    x: jax.Array, kernel: jax.Array, temporal_stride: int
) -> jax.Array:
    """The padded space-to-depth conv's kt temporal taps as 2D convs (`temporal_taps_2d`)."""
    blocks, block_kernel = _space_to_depth(x, kernel, STEM_CHANNEL_MULTIPLE)
    return temporal_taps_2d(blocks, block_kernel, (temporal_stride, 1, 1), _stem_padding(kernel))


def stem_conv_space_to_depth_folded(
    x: jax.Array, kernel: jax.Array, temporal_stride: int
) -> jax.Array:
    """The space-to-depth conv as one 2D conv over its kt taps folded into kt * 4C channels,
    zero-padded to a multiple of 8 (`folded_taps_2d`)."""
    blocks, block_kernel = _space_to_depth(x, kernel, 1)
    return _folded_taps_2d(
        blocks, block_kernel, (temporal_stride, 1, 1), list(_stem_padding(kernel)), 1, None,
        None, STEM_CHANNEL_MULTIPLE,
    )


StemConvFunction = Callable[[jax.Array, jax.Array, int], jax.Array]
# config.model.stem_conv's choices: all give the same values from the same stored kernel.
STEM_CONV_FORMULATIONS: dict[str, StemConvFunction] = {
    'direct': stem_conv_direct,
    'space_to_depth': stem_conv_space_to_depth,
    'space_to_depth_padded': stem_conv_space_to_depth_padded,
    'space_to_depth_temporal_taps': stem_conv_space_to_depth_temporal_taps,
    'space_to_depth_folded': stem_conv_space_to_depth_folded,
}
