"""3D ResNets in the layout of Hara et al. (CVPR 2018): `models/resnet.py` of the reference.

The reference stem (conv1 7x7x7, bn1, ReLU, max pool), four stages `layer1`..`layer4` of basic
or bottleneck blocks (stride 2 in T, H and W at the start of stages 2-4), shortcut A or B, and
the classifier `fc`. Parameter names follow the PyTorch reference so that importing is a
renaming: blocks `layer{1..4}_{i}` hold `conv1`/`bn1`, `conv2`/`bn2` (`conv3`/`bn3` in
bottlenecks) and `downsample` (`conv` + `bn`, shortcut B only).

`ResNet3D` is also the frame of the reference's wide and ResNeXt variants, which change only
the bottleneck's widths and grouping (`stage_block`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax

from r3d_jax.models import layers

STAGE_WIDTHS = (64, 128, 256, 512)
# depth -> (block kind, blocks per stage), as the reference's resnet10 ... resnet200.
ARCHITECTURES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ('basic', (1, 1, 1, 1)),
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
    200: ('bottleneck', (3, 24, 36, 3)),
}
BOTTLENECK_EXPANSION = 4
_BLOCK = re.compile(r'^layer([1-4])_(\d+)$')


def torch_block_names(path: tuple[str, ...]) -> list[str]:
    """The PyTorch names of a Flax module path inside a residual network's stages:
    `layer2_0` -> `layer2.0`, and the shortcut's `downsample/conv`, `/bn` -> `downsample.0`, `.1`.
    """
    names = []
    for parent, module in zip(('', *path), path, strict=False):
        block = _BLOCK.match(module)
        if block:
            names += [f'layer{block.group(1)}', block.group(2)]
        elif parent == 'downsample':
            names.append({'conv': '0', 'bn': '1'}[module])
        else:
            names.append(module)
    return names


def torch_module_name(path: tuple[str, ...], arch: str) -> str:
    """The reference's PyTorch module name of a Flax module path (the same in every
    residual family of the reference: `conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`)."""
    del arch
    return '.'.join(torch_block_names(path))


class BasicBlock(layers.ResidualBlock):
    """conv3x3x3 (stride) -> BN -> ReLU -> conv3x3x3 -> BN, plus shortcut, ReLU."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = self.out_features
        y = self.convs(features, 3, self.strides, 1, name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.convs(features, 3, 1, 1, name='conv2')(y)
        y = self.norm(name='bn2')(y)
        return nn.relu(self.add_shortcut(x, y))


class Bottleneck(layers.ResidualBlock):
    """conv1x1x1 -> conv3x3x3 (stride, grouped) -> conv1x1x1, each with BN, plus shortcut, ReLU.

    The reference's ResNet bottleneck has mid width = stage width and 4x the stage width out;
    its wide and ResNeXt variants change `mid_features`, `out_features` and `groups`.
    """

    mid_features: int = 64
    groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mid = self.mid_features
        y = self.convs(mid, 1, name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.convs(mid, 3, self.strides, 1, groups=self.groups, name='conv2')(y)
        y = nn.relu(self.norm(name='bn2')(y))
        y = self.convs(self.out_features, 1, name='conv3')(y)
        y = self.norm(name='bn3')(y)
        return nn.relu(self.add_shortcut(x, y))


class ResNet3D(layers.ReferenceStemClassifier):
    """The reference's 3D ResNet: clips [N, T, H, W, 3] -> float32 logits [N, num_classes]."""

    depth: int = 18
    shortcut: str = 'B'
    shortcut_a_stop_gradient: bool = True

    depths: ClassVar[dict[int, tuple[str, tuple[int, int, int, int]]]] = ARCHITECTURES

    def check_fields(self) -> None:
        super().check_fields()
        layers.check_choices(self, {'depth': tuple(self.depths), 'shortcut': layers.SHORTCUTS})

    def stage_block(self, kind: str, stage: int) -> Callable[..., layers.ResidualBlock]:
        """The block class of `stage` (1-4) with its widths, for `kind` 'basic' or 'bottleneck'."""
        width = STAGE_WIDTHS[stage - 1]
        if kind == 'basic':
            return functools.partial(BasicBlock, out_features=width)
        return functools.partial(
            Bottleneck, mid_features=width, out_features=width * BOTTLENECK_EXPANSION
        )

    @nn.compact
    def __call__(self, clips: jax.Array, *, train: bool) -> jax.Array:
        norm = self.batch_norm(train)
        x = self.reference_stem(self.normalise(clips), norm)
        kind, blocks_per_stage = self.depths[self.depth]
        for stage, num_blocks in enumerate(blocks_per_stage, start=1):
            block = self.stage_block(kind, stage)
            for index in range(num_blocks):
                x = block(
                    strides=layers.triple(2 if stage > 1 and index == 0 else 1),
                    shortcut=self.shortcut,
                    shortcut_a_stop_gradient=self.shortcut_a_stop_gradient,
                    convs=self.conv_factory(stage),
                    norm=norm,
                    name=f'layer{stage}_{index}',
                )(x)
        return self.classify(x)
