"""Pre-activation 3D ResNets: the reference's `models/pre_act_resnet.py` (CVPR 2018 branch).

The reference's stem, stages and shortcuts, with blocks that normalise and activate before each
convolution (BN-ReLU-conv). The shortcut takes the block's raw input, nothing follows the sum,
and the last stage feeds the average pool directly: the reference has no final BN-ReLU. Names
are the reference's: `bn1` normalises the block's input, `conv1` follows it, and so on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax

from r3d_jax.models import layers, resnet

# depth -> (block kind, blocks per stage), as the reference's pre-activation resnet18 ... 200.
ARCHITECTURES = {depth: spec for depth, spec in resnet.ARCHITECTURES.items() if depth != 10}


class PreActivationBasicBlock(layers.ResidualBlock):
    """BN -> ReLU -> conv3x3x3 (stride) -> BN -> ReLU -> conv3x3x3, plus shortcut."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = self.out_features
        y = nn.relu(self.norm(name='bn1')(x))
        y = self.convs(features, 3, self.strides, 1, name='conv1')(y)
        y = nn.relu(self.norm(name='bn2')(y))
        y = self.convs(features, 3, 1, 1, name='conv2')(y)
        return self.add_shortcut(x, y)


class PreActivationBottleneck(layers.ResidualBlock):
    """BN-ReLU-conv1x1x1, BN-ReLU-conv3x3x3 (stride), BN-ReLU-conv1x1x1 (x4), plus shortcut."""

    mid_features: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mid = self.mid_features
        y = nn.relu(self.norm(name='bn1')(x))
        y = self.convs(mid, 1, name='conv1')(y)
        y = nn.relu(self.norm(name='bn2')(y))
        y = self.convs(mid, 3, self.strides, 1, name='conv2')(y)
        y = nn.relu(self.norm(name='bn3')(y))
        y = self.convs(self.out_features, 1, name='conv3')(y)
        return self.add_shortcut(x, y)


class PreActivationResNet3D(resnet.ResNet3D):
    """The reference's pre-activation 3D ResNet, depths 18 to 200."""

    depths = ARCHITECTURES

    def stage_block(self, kind: str, stage: int) -> Callable[..., layers.ResidualBlock]:
        width = resnet.STAGE_WIDTHS[stage - 1]
        if kind == 'basic':
            return functools.partial(PreActivationBasicBlock, out_features=width)
        return functools.partial(
            PreActivationBottleneck,
            mid_features=width,
            out_features=width * resnet.BOTTLENECK_EXPANSION,
        )
