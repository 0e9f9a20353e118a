"""Classifying video files with a checkpoint, the way the evaluation scores a test video.

A file is decoded with PyAV (any container and codec FFmpeg reads) and stored frame by frame as
the dataset build stores videos (`ucf101.decode_video`: short side resized to the checkpoint's
`frame_short_side`, JPEG-encoded); the evaluation's video-mode phases then cut it into the
non-overlapping clips that cover it, with their spatial views (`input_pipeline.eval_sampler` and
`eval_preprocessor`, built on `eval_clip_frame_indices` and `eval_spatial_views`). The softmax
averaged over the clips ranks the classes. Class names and preprocessing come from the
checkpoint's metadata, so no dataset is needed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from r3d_jax import checkpoints, evaluation
from r3d_jax.data import input_pipeline, ucf101
from r3d_jax.models import create_model, expected_variables, upgrade_model_config

# The short side frames are stored at when a checkpoint does not say (configs/default.py).
DEFAULT_FRAME_SHORT_SIDE = 128
# Clips scored per forward pass; the last pass is padded, so one compiled shape serves all.
CLIPS_PER_PASS = 8


class VideoReadError(ValueError):
    """A video file cannot be decoded."""


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A model with its variables, the config that preprocesses its input, and its classes."""

    model: nn.Module
    variables: Any
    config: ml_collections.ConfigDict  # `model` and `input` fields, plus `data.frame_short_side`.
    class_names: list[str]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The classes of one video file, most probable first."""

    path: str
    num_frames: int
    num_clips: int  # Clips x spatial views averaged.
    top_classes: list[tuple[str, float]]  # (class name, probability).

    def to_json(self) -> dict[str, Any]:
        return {
            'path': self.path,
            'num_frames': self.num_frames,
            'num_clips': self.num_clips,
            'top_classes': [{'class': name, 'probability': p} for name, p in self.top_classes],
        }


def classifier_config(metadata: dict[str, Any], source: str) -> ml_collections.ConfigDict:
    """The model, input and frame-size config a checkpoint's metadata records."""
    missing = [key for key in ('model', 'input') if not metadata.get(key)]
    if missing:
        raise checkpoints.CheckpointError(
            f'{source} metadata lacks {missing}; it cannot be used without a config.'
        )
    frame_short_side = (metadata.get('data') or {}).get('frame_short_side')
    if frame_short_side is None:
        logging.warning(
            '%s metadata does not record data.frame_short_side; resizing frames to %d pixels.',
            source,
            DEFAULT_FRAME_SHORT_SIDE,
        )
        frame_short_side = DEFAULT_FRAME_SHORT_SIDE
    return ml_collections.ConfigDict(
        {
            'model': upgrade_model_config(metadata['model']),
            'input': metadata['input'],
            'data': {'frame_short_side': int(frame_short_side)},
        }
    )


def load_classifier(directory: str) -> Classifier:
    """The model a checkpoint's metadata describes, with its variables (checked to fit)."""
    source = f'Checkpoint {directory}'
    variables, metadata = checkpoints.load_variables(directory)
    config = classifier_config(metadata, source)
    try:
        model = create_model(config)
    except (AttributeError, KeyError) as error:
        raise checkpoints.CheckpointError(
            f'{source} metadata does not describe a model this version can build: {error}'
        ) from error
    checkpoints.check_variables_fit(
        variables,
        expected_variables(model, evaluation.clip_shape(config)),
        source,
    )
    num_classes = config.model.num_classes
    class_names = metadata.get('class_names') or [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise checkpoints.CheckpointError(
            f'{source} names {len(class_names)} classes but its model has {num_classes}.'
        )
    return Classifier(model, jax.device_put(variables), config, list(class_names))


def video_clips(path: str, config: ml_collections.ConfigDict) -> tuple[np.ndarray, int]:
    """uint8 [clips x views, T, S, S, 3] of the video at `path`, and its frame count."""
    try:
        video = ucf101.decode_video(path, config.data.frame_short_side)
    except (ucf101.VideoDecodeError, OSError) as error:
        raise VideoReadError(f'Cannot read video {path}: {error}') from error
    example = {
        'frames': tf.constant(video.frames, tf.string),
        'num_frames': tf.constant(len(video.frames), tf.int32),
        'label': tf.constant(-1, tf.int32),  # Unknown; the phases only carry it along.
        'index': tf.constant(0, tf.int32),
    }
    sample = input_pipeline.eval_sampler(config, 'video')(example)
    clips = input_pipeline.eval_preprocessor(config)(sample)['clips']
    return clips.numpy(), len(video.frames)


@functools.lru_cache(maxsize=4)
def _probabilities_fn(model: nn.Module) -> Any:
    return jax.jit(
        lambda variables, clips: jax.nn.softmax(
            model.apply(variables, clips, train=False).astype(jnp.float32), axis=-1
        )
    )


def clip_probabilities(classifier: Classifier, clips: np.ndarray) -> np.ndarray:
    """float32 [num_clips, num_classes] softmax of each clip, in passes of CLIPS_PER_PASS."""
    probabilities_of = _probabilities_fn(classifier.model)
    outputs = []
    for start in range(0, len(clips), CLIPS_PER_PASS):
        chunk = clips[start : start + CLIPS_PER_PASS]
        padding = CLIPS_PER_PASS - len(chunk)
        padded = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(np.asarray(probabilities_of(classifier.variables, padded))[: len(chunk)])
    return np.concatenate(outputs)


def predict_video(classifier: Classifier, path: str, top_k: int = 5) -> Prediction:
    """The `top_k` classes of one video by softmax averaged over its clips and views."""
    clips, num_frames = video_clips(path, classifier.config)
    scores = clip_probabilities(classifier, clips).mean(axis=0)
    ranked = np.argsort(-scores, kind='stable')[:top_k]
    return Prediction(
        path=path,
        num_frames=num_frames,
        num_clips=len(clips),
        top_classes=[(classifier.class_names[i], float(scores[i])) for i in ranked],
    )


def format_predictions(predictions: Sequence[Prediction]) -> str:
    """Each file with its classes and probabilities, as aligned plain text."""
    lines = []
    for prediction in predictions:
        lines.append(
            f'{prediction.path} ({prediction.num_frames} frames, {prediction.num_clips} clips)'
        )
        width = max(len(name) for name, _ in prediction.top_classes)
        lines.extend(
            f'  {name:<{width}}  {100 * probability:6.2f}%'
            for name, probability in prediction.top_classes
        )
    return '\n'.join(lines)
