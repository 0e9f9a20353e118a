"""The training crop's resize and flip, done on the accelerator inside the train step.

The input pipeline decodes each clip's multi-scale crop window (one of a few sizes) and sends
it as uint8, padded to the largest crop side, with its side and flip draw. Resizing 16 frames on
the host cost the pipeline about a third of its time; here it is a few small matrix products.

The result is bit-exact PIL `Image.resize(BILINEAR)`, which the reference uses: the same
coefficients (a triangle filter widened by the scale when shrinking, normalised, rounded to
22-bit fixed point), a horizontal pass rounded to uint8, then a vertical one. The integer
coefficients are split into two 11-bit halves, so every product and sum is an integer that
float16 inputs and float32 accumulation represent exactly: the result does not depend on the
device, the batch size or the order of summation, and the products run on tensor cores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PRECISION_BITS = 22  # PIL's fixed-point precision for 8-bit images.
# Coefficients (at most 2^22) in two halves of at most 2^11, which float16 holds exactly.
HALF_BITS = 11
HALF_SHIFTS = (0, HALF_BITS)


def crop_sides(config: Any) -> list[int]:
    """The training crops' sides: each of `config.input.scales` of the frames' short side."""
    short_side = np.float64(config.data.frame_short_side)
    return [int(np.floor(short_side * scale)) for scale in config.input.scales]


def max_crop_side(config: Any) -> int:
    """The side P to which the input pipeline pads every training crop."""
    return max(crop_sides(config))


def pil_bilinear_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """int64 [out_size, in_size]: PIL's fixed-point BILINEAR weights of one axis."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 1.0 * filter_scale
    coefficients = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        stop = min(int(centre + support + 0.5), in_size)
        pixels = np.arange(first, stop)
        weights = np.maximum(0.0, 1.0 - np.abs((pixels - centre + 0.5) / filter_scale))
        if weights.sum() != 0.0:
            weights = weights / weights.sum()
        coefficients[out, first:stop] = weights
    return np.floor(coefficients * (1 << PRECISION_BITS) + 0.5).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class CropResize:
    """Resizes padded crops of the configured sides to `size` x `size`, flipping some."""

    sides: tuple[int, ...]
    size: int

    @classmethod
    def from_config(cls, config: Any) -> CropResize:
        return cls(tuple(crop_sides(config)), int(config.input.crop_size))

    def coefficient_halves(self, padded: int) -> np.ndarray:
        """float32 [2, len(sides), size, padded]: each side's coefficients, low half first."""
        table = np.zeros((len(self.sides), self.size, padded), np.int64)
        for index, side in enumerate(self.sides):
            table[index, :, :side] = pil_bilinear_coefficients(side, self.size)
        low = table & ((1 << HALF_BITS) - 1)
        return np.stack([low, table >> HALF_BITS]).astype(np.float32)

    def __call__(self, crops: jax.Array, sides: jax.Array, flips: jax.Array) -> jax.Array:
        """uint8 [N, T, size, size, 3] from crops [N, T, P, P, 3] whose top-left sides x sides
        pixels hold the crop (each side one of `self.sides`); `flips` mirror left to right."""
        if crops.ndim != 5 or crops.shape[2] != crops.shape[3]:
            raise ValueError(f'Crops must be [N, T, P, P, C]; got shape {crops.shape}.')
        if max(self.sides) > crops.shape[2]:
            raise ValueError(f'Crop sides {self.sides} do not fit crops of shape {crops.shape}.')
        if crops.shape[2] > 14 * self.size:
            raise ValueError(f'Crops of {crops.shape[2]} pixels shrink too far for {self.size}.')
        table = jnp.asarray(self.coefficient_halves(crops.shape[2]), jnp.float16)
        which = jnp.argmax(sides[:, None] == jnp.asarray(self.sides)[None, :], axis=1)
        rows = table[:, which]  # [2, N, size, P]
        # A flip reverses the output columns: the horizontal pass's weights in reverse order.
        columns = jnp.where(flips[None, :, None, None], rows[:, :, ::-1, :], rows)
        pixels = _fixed_point_pass('nwq,ntpqc->ntpwc', columns, crops)
        return _fixed_point_pass('nhp,ntpwc->nthwc', rows, pixels)


def _fixed_point_pass(spec: str, coefficient_halves: jax.Array, pixels: jax.Array) -> jax.Array:
    """One PIL pass: sum(coefficient * pixel), rounded from PRECISION_BITS to uint8."""
    values = pixels.astype(jnp.float16)  # uint8 is exact in float16.
    total = jnp.zeros((), jnp.int32)
    for coefficients, shift in zip(coefficient_halves, HALF_SHIFTS, strict=True):
        # Only the filter's taps are non-zero: at most 2 * P / size + 2 products, each below
        # 2^19, so the sum is below 2^24, exact in float32, while P <= 14 * size.
        part = jnp.einsum(spec, coefficients, values, preferred_element_type=jnp.float32)
        total = total + (part.astype(jnp.int32) << shift)
    rounded = (total + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS
    return jnp.clip(rounded, 0, 255).astype(jnp.uint8)

