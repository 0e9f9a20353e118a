"""3D DenseNet-BC: the reference's `models/densenet.py` (CVPR 2018 branch).

The reference stem (`conv0`, `norm0`, ReLU, max pool `pool0`), four dense blocks whose layers
each add `growth_rate` channels (BN-ReLU-conv1x1x1 to bn_size * growth_rate channels, then
BN-ReLU-conv3x3x3 to growth_rate, concatenated to the layer's input), transitions between them
(BN-ReLU-conv1x1x1 halving the channels, then a 2x2x2 average pool of stride 2), a final BN
(`norm5`), ReLU, the average pool and the classifier `classifier`. The released models use no
dropout, and neither does this layout.

Names mirror the reference's `features.*`: blocks `denseblock{1..4}` of `denselayer{1..n}` with
`norm1`, `conv1`, `norm2`, `conv2` (the reference spells them `norm.1`, `conv.1`, ...),
`transition{1..3}` with `norm` and `conv`.
"""

from __future__ import annotations

import re
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from r3d_jax.models import layers

# depth -> dense layers per block, as the reference's densenet121 ... densenet264.
ARCHITECTURES: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
# A dense layer's `norm1` ... `conv2` as spelt today, and as the released checkpoints spell it.
_MODERN_LAYER_NAME = re.compile(r'(\.denselayer\d+\.(?:norm|relu|conv))([12])\.')
_RELEASED_LAYER_NAME = re.compile(r'^(norm|conv)([12])$')


def torch_module_name(path: tuple[str, ...], arch: str) -> str:
    """The reference's PyTorch module name of a Flax module path, as the released checkpoints
    spell it: `features.denseblock1.denselayer1.norm.1`, `features.norm5`, `classifier`."""
    del arch
    names = [_RELEASED_LAYER_NAME.sub(r'\1.\2', module) for module in path]
    return '.'.join(names if path[0] == 'classifier' else ['features', *names])


def released_torch_key(key: str) -> str:
    """A state_dict key with today's spelling of dense layers (`norm1`) in the released one
    (`norm.1`); other keys unchanged."""
    return _MODERN_LAYER_NAME.sub(r'\1.\2.', key)


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1x1, BN-ReLU-conv3x3x3; its `growth_rate` channels join the input's."""

    growth_rate: int
    bn_size: int
    convs: layers.ConvFactory
    norm: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(self.norm(name='norm1')(x))
        y = self.convs(self.bn_size * self.growth_rate, 1, name='conv1')(y)
        y = nn.relu(self.norm(name='norm2')(y))
        y = self.convs(self.growth_rate, 3, 1, 1, name='conv2')(y)
        return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1x1 to `features` channels, then a 2x2x2 average pool of stride 2."""

    features: int
    convs: layers.ConvFactory
    norm: layers.ModuleDef
    clip_shape: tuple[int, ...]  # For the message when the clip is too small.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if min(x.shape[1:4]) < 2:
            raise ValueError(
                f'{self.name}: the feature map {x.shape[1:4]} (T, H, W) of clips '
                f'{self.clip_shape} is too small for its 2x2x2 average pool; the reference '
                'layout needs clips of at least 16 frames and 32x32 pixels.'
            )
        y = nn.relu(self.norm(name='norm')(x))
        y = self.convs(self.features, 1, name='conv')(y)
        precision = jnp.promote_types(y.dtype, jnp.float32)
        pooled = nn.avg_pool(y.astype(precision), (2, 2, 2), strides=(2, 2, 2), padding='VALID')
        return pooled.astype(y.dtype)


class DenseBlock(nn.Module):
    """`num_layers` dense layers `denselayer1` ... in a row."""

    num_layers: int
    growth_rate: int
    bn_size: int
    convs: layers.ConvFactory
    norm: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for index in range(1, self.num_layers + 1):
            x = DenseLayer(
                self.growth_rate, self.bn_size, self.convs, self.norm, name=f'denselayer{index}'
            )(x)
        return x


class DenseNet3D(layers.ReferenceStemClassifier):
    """The reference's 3D DenseNet-BC, depths 121, 169, 201 and 264."""

    depth: int = 121
    growth_rate: int = 32
    bn_size: int = 4  # The first conv of a dense layer has bn_size * growth_rate channels.

    head_name: ClassVar[str] = 'classifier'

    def check_fields(self) -> None:
        super().check_fields()
        layers.check_choices(self, {'depth': tuple(ARCHITECTURES)})
        layers.check_positive_integers(self, ('growth_rate', 'bn_size'))

    @nn.compact
    def __call__(self, clips: jax.Array, *, train: bool) -> jax.Array:
        norm = self.batch_norm(train)
        x = self.reference_stem(self.normalise(clips), norm, 'conv0', 'norm0')
        blocks = ARCHITECTURES[self.depth]
        for block, num_layers in enumerate(blocks, start=1):
            convs = self.conv_factory(block)
            x = DenseBlock(
                num_layers, self.growth_rate, self.bn_size, convs, norm, name=f'denseblock{block}'
            )(x)
            if block < len(blocks):
                x = Transition(
                    x.shape[-1] // 2, convs, norm, tuple(clips.shape), name=f'transition{block}'
                )(x)
        x = nn.relu(norm(name='norm5')(x))
        return self.classify(x)
