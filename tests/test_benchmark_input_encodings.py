"""The encodings benchmark's crop comparison: it cuts the train step's crops and ranks encodings.

Its timings need built datasets and are the script's to print; what is checked here is that the
crops it compares are the ones training sees and that its errors order encodings as JPEG does.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest

from r3d_jax import defaults
from r3d_jax.crop_resize import CropResize, crop_sides

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks')


@pytest.fixture(scope='module')
def input_encodings():
    sys.path.insert(0, BENCHMARKS)
    try:
        yield importlib.import_module('input_encodings')
    finally:
        sys.path.remove(BENCHMARKS)


def video_like_frame(seed: int) -> np.ndarray:
    """uint8 [240, 320, 3]: smooth shapes plus some grain, like a decoded video frame."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:240, 0:320]
    frame = np.zeros((240, 320, 3))
    for _ in range(6):
        centre = rng.uniform([0, 0], [240, 320])
        radius = rng.uniform(20, 80)
        inside = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 < radius**2
        frame[inside] = rng.uniform(0, 255, 3)
    frame += rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_the_crops_compared_are_the_train_steps_crops(input_encodings):
    config = defaults.get_config()
    baseline = input_encodings.Encoding(config.data.frame_short_side, config.data.jpeg_quality)
    _, stored, _ = input_encodings.stored_frame(video_like_frame(0), baseline)
    scales, size = list(config.input.scales), config.input.crop_size
    sides = crop_sides(config)
    resize = CropResize(tuple(sides), size)
    boxes = input_encodings.crop_boxes(stored.shape[1], stored.shape[0], scales)
    assert len(boxes) == 5 * len(scales)
    for (left, top, side), compared in zip(
        boxes, input_encodings.crops(stored, scales, size), strict=True
    ):
        window = np.zeros((1, 1, max(sides), max(sides), 3), np.uint8)
        window[0, 0, :side, :side] = stored[top:top + side, left:left + side]
        trained_on = resize(window, np.array([side]), np.array([False]))
        np.testing.assert_array_equal(np.asarray(trained_on)[0, 0], compared)


def test_crop_errors_grow_as_jpeg_quality_falls_and_vanish_against_the_baseline_itself(
    input_encodings,
):
    encoding = input_encodings.Encoding
    encodings = [encoding(128, 90), encoding(128, 40), encoding(96, 90)]
    frames = [video_like_frame(seed) for seed in range(2)]
    errors = input_encodings.crop_errors(frames, encodings, [1.0, 0.5], 112)
    baseline, low_quality, small = (errors[e] for e in encodings)
    assert baseline['error_vs_first'] == 0
    assert 0 < baseline['jpeg_error'] < low_quality['jpeg_error']
    assert low_quality['error_vs_first'] > 0
    assert low_quality['jpeg_psnr'] < baseline['jpeg_psnr']
    assert low_quality['bytes_per_frame'] < baseline['bytes_per_frame']
    assert small['bytes_per_frame'] < baseline['bytes_per_frame']
