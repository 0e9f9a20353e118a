"""Work of a model's forward pass, counted from its layer shapes (no computation)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def forward_macs_per_clip(model: nn.Module, clip_length: int, crop_size: int) -> int:
    """Multiply-adds of one clip's forward pass, counted from the model's layer shapes.

    Every layer that owns a `kernel` [..., in / groups, out] (the convolutions, the stem conv
    and the classifier) does, for each of its output values, one multiply-add per kernel entry
    that feeds it: prod(output shape) * prod(kernel shape[:-1]); a grouped conv's kernel holds
    only its group's inputs. The stem counts its stored 7x7 kernel, not the zero-padded kernel
    of its space-to-depth form. Padding is counted as work, as is usual; BatchNorm, pooling,
    concatenations and additions are not.
    """
    layer_macs = []

    def count(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        output = next_fun(*args, **kwargs)
        if context.method_name != '__call__':
            return output
        params = context.module.variables.get('params', {})
        if 'kernel' in params:
            kernel_shape = params['kernel'].shape
            layer_macs.append(math.prod(output.shape[1:]) * math.prod(kernel_shape[:-1]))
        return output

    clip = jax.ShapeDtypeStruct((1, clip_length, crop_size, crop_size, 3), jnp.uint8)
    with nn.intercept_methods(count):
        jax.eval_shape(lambda clips: model.init(jax.random.key(0), clips, train=False), clip)
    return sum(layer_macs)
