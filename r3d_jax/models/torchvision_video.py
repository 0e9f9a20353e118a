"""torchvision's video ResNets: r3d_18, mc3_18 and r2plus1d_18 (Tran et al., CVPR 2018).

The layout of `torchvision/models/video/resnet.py` (`VideoResNet`), written for Flax:
- stems: r3d and mc3 a conv 3x7x7, stride (1, 2, 2), padding (1, 3, 3), BN, ReLU, no max pool;
  r2plus1d a conv 1x7x7 to 45 channels, BN, ReLU, a conv 3x1x1 to 64, BN, ReLU;
- stage convolutions ("conv builders"): r3d 3x3x3 everywhere; mc3 3x3x3 in stage 1 and 1x3x3
  (no temporal extent, no temporal stride) in stages 2-4; r2plus1d a 1x3x3 conv to a mid width,
  BN, ReLU and a 3x1x1 conv, the mid width chosen as torchvision does so that the pair has about
  the parameters of a 3x3x3 conv: (in * out * 27) // (in * 9 + 3 * out), with in and out the
  block's input and stage widths for both of its convolutions;
- the shortcut's strides are the builder's (1x2x2 for mc3's stages 2-4), with a conv + BN
  (shortcut B, torchvision's only kind; A is available as in the reference families);
- init: Kaiming normal (fan_out) convs, BN 1 and 0, classifier N(0, 0.01) with zero bias.
torchvision publishes the depth-18 models; the same layout takes every depth of the reference.

Flax names follow the reference ResNet's (`conv1`/`bn1` for the stem, blocks `layer{s}_{i}` with
`conv1`, `bn1`, `conv2`, `bn2`, `downsample`), (2+1)D convs holding `spatial`, `norm` and
`temporal`; `r3d_jax.convert_torch` maps them to torchvision's names (`stem.0`, `conv1.0`, ...).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from r3d_jax.models import layers, resnet

ARCHITECTURES = resnet.ARCHITECTURES
VARIANTS = ('r3d', 'mc3', 'r2plus1d')
# The conv builder of each stage: '3d' (3x3x3), 'spatial' (1x3x3) or '2plus1d'.
STAGE_BUILDERS = {
    'r3d': ('3d', '3d', '3d', '3d'),
    'mc3': ('3d', 'spatial', 'spatial', 'spatial'),
    'r2plus1d': ('2plus1d', '2plus1d', '2plus1d', '2plus1d'),
}
R2PLUS1D_STEM_MID_WIDTH = 45


# Flax module -> torchvision's index in the Sequential that holds it.
_STEM_INDICES = {'conv1': '0', 'spatial': '0', 'norm': '1', 'temporal': '3'}
_TWO_PLUS_ONE_INDICES = {'spatial': '0', 'norm': '1', 'temporal': '3'}


def torch_module_name(path: tuple[str, ...], arch: str) -> str:
    """torchvision's module name of a Flax module path: the stem's `conv1` (or its `spatial`,
    `norm`, `temporal`) and `bn1` -> `stem.0`, `stem.1` (`stem.0`, `stem.1`, `stem.3`, `stem.4`
    for r2plus1d); a block's `conv2` -> `conv2.0` (a (2+1)D `conv2.0.0`, `.0.1`, `.0.3`) and
    `bn2` -> `conv2.1`; shortcuts and `fc` as in the reference."""
    if path[0] == 'conv1':
        return 'stem.' + _STEM_INDICES[path[-1]]
    if path[0] == 'bn1':
        return 'stem.4' if arch == 'r2plus1d' else 'stem.1'
    if path[0] == 'fc' or path[1] == 'downsample':
        return resnet.torch_module_name(path, arch)
    block, module, *inner = path  # e.g. ('layer1_0', 'conv1', 'spatial') or (..., 'bn1').
    index = '0' if module.startswith('conv') else '1'
    inner_indices = [_TWO_PLUS_ONE_INDICES[name] for name in inner]
    return '.'.join(
        [*resnet.torch_block_names((block,)), f'conv{module[-1]}', index, *inner_indices]
    )


def mid_width(in_features: int, features: int) -> int:
    """torchvision's (2+1)D mid width for a block of `in_features` -> `features` channels."""
    return (in_features * features * 3 * 3 * 3) // (in_features * 3 * 3 + 3 * features)


def builder_strides(builder: str, stride: int) -> layers.Triple:
    """The strides of a builder's conv and of its block's shortcut (torchvision's
    `get_downsample_stride`): no temporal stride for the purely spatial conv."""
    return (1, stride, stride) if builder == 'spatial' else (stride, stride, stride)


class Conv2Plus1D(nn.Module):
    """conv 1x3x3 (spatial strides) -> BN -> ReLU -> conv 3x1x1 (temporal stride)."""

    features: int
    mid_features: int
    strides: layers.Triple
    convs: layers.ConvFactory
    norm: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        st, sh, sw = self.strides
        y = self.convs(self.mid_features, (1, 3, 3), (1, sh, sw), (0, 1, 1), name='spatial')(x)
        y = nn.relu(self.norm(name='norm')(y))
        return self.convs(self.features, (3, 1, 1), (st, 1, 1), (1, 0, 0), name='temporal')(y)


def spatiotemporal_conv(
    builder: str,
    convs: layers.ConvFactory,
    norm: layers.ModuleDef,
    features: int,
    mid_features: int,
    strides: layers.Triple,
    name: str,
) -> nn.Module:
    """The conv a builder makes where the reference layout has a 3x3x3 conv."""
    if builder == '3d':
        return convs(features, 3, strides, 1, name=name)
    if builder == 'spatial':
        return convs(features, (1, 3, 3), strides, (0, 1, 1), name=name)
    return Conv2Plus1D(features, mid_features, strides, convs, norm, name=name)


class VideoBasicBlock(layers.ResidualBlock):
    """conv (builder) -> BN -> ReLU -> conv (builder) -> BN, plus shortcut, ReLU."""

    builder: str = '3d'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = self.out_features
        mid = mid_width(x.shape[-1], features)

        def conv(strides: layers.Triple, name: str) -> nn.Module:
            return spatiotemporal_conv(
                self.builder, self.convs, self.norm, features, mid, strides, name
            )

        y = nn.relu(self.norm(name='bn1')(conv(self.strides, 'conv1')(x)))
        y = self.norm(name='bn2')(conv((1, 1, 1), 'conv2')(y))
        return nn.relu(self.add_shortcut(x, y))


class VideoBottleneck(layers.ResidualBlock):
    """conv1x1x1 -> conv (builder, strides) -> conv1x1x1 (x4), each with BN, plus shortcut."""

    mid_features: int = 64
    builder: str = '3d'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        planes = self.mid_features
        y = nn.relu(self.norm(name='bn1')(self.convs(planes, 1, name='conv1')(x)))
        conv2 = spatiotemporal_conv(
            self.builder,
            self.convs,
            self.norm,
            planes,
            mid_width(x.shape[-1], planes),
            self.strides,
            'conv2',
        )
        y = nn.relu(self.norm(name='bn2')(conv2(y)))
        y = self.norm(name='bn3')(self.convs(self.out_features, 1, name='conv3')(y))
        return nn.relu(self.add_shortcut(x, y))


class R2Plus1DStem(nn.Module):
    """conv 1x7x7 (stride 1x2x2) to 45 channels -> BN -> ReLU -> conv 3x1x1 to 64."""

    convs: layers.ConvFactory
    norm: layers.ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.convs.stem(R2PLUS1D_STEM_MID_WIDTH, 1, 1, name='spatial')(x)
        y = nn.relu(self.norm(name='norm')(y))
        return self.convs(layers.STEM_WIDTH, (3, 1, 1), 1, (1, 0, 0), name='temporal')(y)


class VideoResNet3D(layers.VideoClassifier):
    """torchvision's VideoResNet of `variant` 'r3d', 'mc3' or 'r2plus1d'."""

    variant: str = 'r3d'
    depth: int = 18
    shortcut: str = 'B'
    shortcut_a_stop_gradient: bool = True

    head_init: ClassVar[str] = 'normal_0.01'

    def check_fields(self) -> None:
        super().check_fields()
        layers.check_choices(
            self,
            {'variant': VARIANTS, 'depth': tuple(ARCHITECTURES), 'shortcut': layers.SHORTCUTS},
        )

    @nn.compact
    def __call__(self, clips: jax.Array, *, train: bool) -> jax.Array:
        norm = self.batch_norm(train)
        x = self.normalise(clips)
        stem_convs = self.conv_factory(0)
        if self.variant == 'r2plus1d':
            x = R2Plus1DStem(stem_convs, norm, name='conv1')(x)
        else:
            x = stem_convs.stem(layers.STEM_WIDTH, 3, 1, name='conv1')(x)
        x = nn.relu(norm(name='bn1')(x))

        kind, blocks_per_stage = ARCHITECTURES[self.depth]
        builders = STAGE_BUILDERS[self.variant]
        for stage, num_blocks in enumerate(blocks_per_stage, start=1):
            width = resnet.STAGE_WIDTHS[stage - 1]
            builder = builders[stage - 1]
            for index in range(num_blocks):
                strides = builder_strides(builder, 2 if stage > 1 and index == 0 else 1)
                common = dict(
                    strides=strides,
                    shortcut=self.shortcut,
                    shortcut_a_stop_gradient=self.shortcut_a_stop_gradient,
                    convs=self.conv_factory(stage),
                    norm=norm,
                    builder=builder,
                    name=f'layer{stage}_{index}',
                )
                if kind == 'basic':
                    x = VideoBasicBlock(out_features=width, **common)(x)
                else:
                    out = width * resnet.BOTTLENECK_EXPANSION
                    x = VideoBottleneck(mid_features=width, out_features=out, **common)(x)
        return self.classify(x)
