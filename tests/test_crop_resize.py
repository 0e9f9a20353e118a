"""The on-device resize and flip of training crops: bit-exact PIL BILINEAR, as the reference."""

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from r3d_jax import crop_resize, defaults

SIZE = 28
PADDED = 40
SIDES = (14, 20, 27, 28, 33, 40)  # Enlarging, equal and shrinking.
RESIZE = crop_resize.CropResize(SIDES, SIZE)


def padded_crops(images: list[np.ndarray], fill: int = 0, padded: int = PADDED) -> np.ndarray:
    """uint8 [N, T, padded, padded, 3] holding each [T, side, side, 3] at the top left."""
    crops = np.full((len(images), images[0].shape[0], padded, padded, 3), fill, np.uint8)
    for crop, image in zip(crops, images, strict=True):
        side = image.shape[1]
        crop[:, :side, :side] = image
    return crops


def random_frames(side: int, seed: int, frames: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.linspace(0, 255, side)[None, :, None] + np.linspace(0, 60, side)[:, None, None]
    noise = rng.integers(-40, 41, (frames, side, side, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def pil_bilinear(frames: np.ndarray, size: int) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in frames]
    )


@pytest.mark.parametrize('side', SIDES)
def test_resize_is_bit_exact_pil_bilinear(side):
    frames = random_frames(side, seed=side)
    resized = RESIZE(jnp.asarray(padded_crops([frames])), jnp.array([side]), jnp.array([False]))
    assert resized.dtype == jnp.uint8 and resized.shape == (1, 2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(resized[0], pil_bilinear(frames, SIZE))


def test_resize_is_bit_exact_pil_bilinear_at_the_recipe_sizes():
    config = defaults.get_config()  # 128-pixel frames, the five reference scales, 112 pixels.
    resize = crop_resize.CropResize.from_config(config)
    images = [random_frames(side, seed=side, frames=1) for side in resize.sides]
    crops = padded_crops(images, padded=crop_resize.max_crop_side(config))
    resized = resize(jnp.asarray(crops), jnp.asarray(resize.sides), jnp.zeros(len(images), bool))
    for clip, image in zip(resized, images, strict=True):
        np.testing.assert_array_equal(clip, pil_bilinear(image, config.input.crop_size))


def test_padding_never_reaches_the_output_and_each_clip_has_its_own_side():
    images = [random_frames(side, seed=side) for side in (14, 33, 40, 20)]
    sides = jnp.array([14, 33, 40, 20])
    flips = jnp.array([False, True, False, True])
    zero_padded = RESIZE(jnp.asarray(padded_crops(images)), sides, flips)
    bright_padded = RESIZE(jnp.asarray(padded_crops(images, fill=255)), sides, flips)
    np.testing.assert_array_equal(zero_padded, bright_padded)
    for index, image in enumerate(images):
        alone = RESIZE(
            jnp.asarray(padded_crops([image])), sides[index : index + 1], flips[index : index + 1]
        )
        np.testing.assert_array_equal(zero_padded[index], alone[0])


def test_flip_mirrors_every_frame_left_to_right():
    crops = jnp.asarray(padded_crops([random_frames(33, seed=1, frames=3)]))
    plain = RESIZE(crops, jnp.array([33]), jnp.array([False]))
    flipped = RESIZE(crops, jnp.array([33]), jnp.array([True]))
    np.testing.assert_array_equal(flipped, plain[:, :, :, ::-1])


def test_crop_sides_are_the_reference_scales_of_the_short_side():
    config = defaults.get_config()
    config.data.frame_short_side = 128
    config.input.scales = defaults.REFERENCE_SCALES
    assert crop_resize.crop_sides(config) == [128, 107, 90, 76, 64]
    assert crop_resize.max_crop_side(config) == 128


def test_crops_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r'\[N, T, P, P, C\]'):
        RESIZE(jnp.zeros((1, 2, 40, 39, 3), jnp.uint8), jnp.array([14]), jnp.array([False]))
    with pytest.raises(ValueError, match='do not fit crops'):
        RESIZE(jnp.zeros((1, 2, 32, 32, 3), jnp.uint8), jnp.array([14]), jnp.array([False]))
