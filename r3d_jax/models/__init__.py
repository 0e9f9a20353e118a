"""The model families, built from `config.model`: 3D ResNets of depth 10 to 200."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from r3d_jax.defaults import ConfigError
from r3d_jax.models import layers
from r3d_jax.models.resnet import ResNet3D

STEMS = ('reference', 'torchvision')

__all__ = ['ResNet3D', 'create_model', 'init_variables']


def stem_geometry(
    stem: str, temporal_kernel: int, temporal_stride: int, max_pool: bool
) -> tuple[int, int, bool]:
    """(temporal kernel, temporal stride, max-pool) of a stem; 'torchvision' is fixed."""
    if stem == 'torchvision':
        return 3, 1, False
    return temporal_kernel, temporal_stride, max_pool


def create_model(config: Any, bn_axis_name: str | None = None) -> ResNet3D:
    """Builds the model of `config.model`, normalising inputs as `config.input` says.

    `bn_axis_name` is the pmap axis over which BatchNorm averages batch statistics; it is used
    only when `config.model.sync_batch_norm` is set.
    """
    model_config = config.model
    if model_config.stem not in STEMS:
        raise ConfigError(f'config.model.stem={model_config.stem!r} is not one of {STEMS}.')
    if model_config.dtype not in layers.DTYPES:
        raise ConfigError(
            f'config.model.dtype={model_config.dtype!r} is not one of {layers.DTYPES}.'
        )
    temporal_kernel, temporal_stride, max_pool = stem_geometry(
        model_config.stem,
        model_config.stem_temporal_kernel,
        model_config.stem_temporal_stride,
        model_config.stem_max_pool,
    )
    return ResNet3D(
        depth=model_config.depth,
        num_classes=model_config.num_classes,
        shortcut=model_config.shortcut,
        shortcut_a_stop_gradient=model_config.shortcut_a_stop_gradient,
        stem_temporal_kernel=temporal_kernel,
        stem_temporal_stride=temporal_stride,
        stem_max_pool=max_pool,
        stem_conv=model_config.stem_conv,
        conv_formulation=tuple(model_config.conv_formulation),
        max_pool_gradient=model_config.max_pool_gradient,
        dtype=jnp.dtype(model_config.dtype),
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        bn_fast_variance=model_config.bn_fast_variance,
        bn_axis_name=bn_axis_name if model_config.sync_batch_norm else None,
        value_scale=float(config.input.value_scale),
        mean=tuple(float(m) for m in config.input.mean),
        std=tuple(float(s) for s in config.input.std),
    )


def init_variables(model: Any, rng: jax.Array, clip_shape: Sequence[int]) -> dict[str, Any]:
    """Fresh {'params', 'batch_stats'} for clips of `clip_shape` [N, T, H, W, 3]."""
    clips = jnp.zeros(tuple(clip_shape), jnp.uint8)
    variables = jax.jit(functools.partial(model.init, train=False))(rng, clips)
    return {'params': variables['params'], 'batch_stats': variables['batch_stats']}
