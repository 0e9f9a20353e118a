"""Every model family in PyTorch, written independently of the Flax models to check them.

The layouts, state_dict names and initialisations of the reference code (CVPR2018 branch:
`resnet`, `preresnet`, `wideresnet`, `resnext`, `densenet`) and of torchvision's video ResNets
(`r3d`, `mc3`, `r2plus1d`), in plain PyTorch (torchvision is not needed). The parity tests
compare the Flax models with them, and `benchmarks/train_step.py` times them. Clips are
[N, 3, T, H, W] floats, already normalised. `from_config(config.model)` builds the layout of a
`config.model`.

DenseNet layers are named `norm1`, `conv1`, ... here, as PyTorch accepts them today; with
`densenet_released_names=True` their state_dict names are `norm.1`, `conv.1`, ... as in the
released checkpoints (the reference's own class cannot be built by today's PyTorch, which
refuses dots in module names), and they load such state_dicts with `strict=True`.
The reference declares `norm5` as BatchNorm2d and applies it to 5-D features (which old PyTorch
allowed); here it is a BatchNorm3d, with the same parameters and the same per-channel maths.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = {
    10: ('basic', (1, 1, 1, 1)),
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
    200: ('bottleneck', (3, 24, 36, 3)),
}
DENSE_BLOCKS = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
REFERENCE_ARCHS = ('resnet', 'preresnet', 'wideresnet', 'resnext')
# A dense layer's own module names, as spelt today and in the released checkpoints.
MODERN_LAYER_NAME = re.compile(r'^(norm|relu|conv)([12])\.')
RELEASED_LAYER_NAME = re.compile(r'^(norm|relu|conv)\.([12])\.')
TORCHVISION_CONVS = {
    'r3d': ('3d', '3d', '3d', '3d'),
    'mc3': ('3d', '2d', '2d', '2d'),
    'r2plus1d': ('2+1d', '2+1d', '2+1d', '2+1d'),
}


def conv(cin: int, cout: int, kernel: Any, stride: Any = 1, padding: Any = 0, groups: int = 1):
    return nn.Conv3d(cin, cout, kernel, stride, padding, groups=groups, bias=False)


class ShortcutA(nn.Module):
    """Subsample by `stride`, zero-pad to `planes` channels; detached like the reference's .data."""

    def __init__(self, planes: int, stride: Sequence[int], stop_gradient: bool) -> None:
        super().__init__()
        self.planes, self.stride, self.stop_gradient = planes, tuple(stride), stop_gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        if self.stop_gradient:
            out = out.detach()
        zeros = out.new_zeros(out.size(0), self.planes - out.size(1), *out.shape[2:])
        return torch.cat([out, zeros], dim=1)


def downsample(inplanes, planes, stride, shortcut, stop_gradient) -> nn.Module | None:
    stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    if stride == (1, 1, 1) and inplanes == planes:
        return None
    if shortcut == 'A':
        return ShortcutA(planes, stride, stop_gradient)
    return nn.Sequential(conv(inplanes, planes, 1, stride), nn.BatchNorm3d(planes))


def residual(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if block.downsample is None else block.downsample(x)


# ---------------------------------------------------------------------------------------------
# The reference's ResNet, pre-activation ResNet, wide ResNet and ResNeXt.


class Basic(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, mid=None, groups=1):
        super().__init__()
        self.conv1 = conv(inplanes, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + residual(self, x))


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, mid, groups=1):
        super().__init__()
        self.conv1 = conv(inplanes, mid, 1)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = conv(mid, mid, 3, stride, 1, groups)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = conv(mid, planes, 1)
        self.bn3 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + residual(self, x))


class PreActBasic(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, mid=None, groups=1):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(inplanes)
        self.conv1 = conv(inplanes, planes, 3, stride, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + residual(self, x)


class PreActBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, mid, groups=1):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(inplanes)
        self.conv1 = conv(inplanes, mid, 1)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv2 = conv(mid, mid, 3, stride, 1)
        self.bn3 = nn.BatchNorm3d(mid)
        self.conv3 = conv(mid, planes, 1)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + residual(self, x)


def reference_stage(arch: str, kind: str, stage: int, widen_factor: int, cardinality: int):
    """(block class, output channels, mid channels, groups) of a stage (0-3) of `arch`."""
    width = 64 * 2**stage
    if arch == 'wideresnet':
        return Bottleneck, 2 * width * widen_factor, width * widen_factor, 1
    if arch == 'resnext':
        planes = 2 * width  # Stage widths 128 ... 1024, expansion 2.
        return Bottleneck, 2 * planes, cardinality * (planes // 32), cardinality
    pre = arch == 'preresnet'
    if kind == 'basic':
        return (PreActBasic if pre else Basic), width, None, 1
    return (PreActBottleneck if pre else Bottleneck), 4 * width, width, 1


def reference_stem(temporal_kernel: int, temporal_stride: int, max_pool: bool) -> list:
    return [
        conv(3, 64, (temporal_kernel, 7, 7), (temporal_stride, 2, 2), (temporal_kernel // 2, 3, 3)),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(3, 2, 1) if max_pool else nn.Identity(),
    ]


def init_reference(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ReferenceResNet(nn.Module):
    """`conv1`, `bn1`, max pool, `layer1`..`layer4`, average pool, `fc`."""

    def __init__(
        self,
        arch: str,
        depth: int,
        num_classes: int,
        shortcut: str = 'B',
        shortcut_a_stop_gradient: bool = True,
        widen_factor: int = 2,
        cardinality: int = 32,
        stem_temporal_kernel: int = 7,
        stem_temporal_stride: int = 1,
        stem_max_pool: bool = True,
    ) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = reference_stem(
            stem_temporal_kernel, stem_temporal_stride, stem_max_pool
        )
        kind, counts = BLOCKS[depth]
        inplanes = 64
        for stage, count in enumerate(counts):
            spec = reference_stage(arch, kind, stage, widen_factor, cardinality)
            block, planes, mid, groups = spec
            stride = 1 if stage == 0 else 2
            first = downsample(inplanes, planes, stride, shortcut, shortcut_a_stop_gradient)
            blocks = [block(inplanes, planes, stride, first, mid, groups)]
            blocks += [block(planes, planes, 1, None, mid, groups) for _ in range(count - 1)]
            setattr(self, f'layer{stage + 1}', nn.Sequential(*blocks))
            inplanes = planes
        self.fc = nn.Linear(inplanes, num_classes)
        init_reference(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3, 4)))


# ---------------------------------------------------------------------------------------------
# The reference's DenseNet-BC.


def rename_keys(state_dict: dict, prefix: str, pattern: re.Pattern, replacement: str) -> None:
    """Renames, in place and in order, the keys under `prefix` that `pattern` matches."""
    for key in [key for key in state_dict if key.startswith(prefix)]:
        state_dict[prefix + pattern.sub(replacement, key[len(prefix):])] = state_dict.pop(key)


class DenseLayer(nn.Sequential):
    """norm1, relu1, conv1, norm2, relu2, conv2; the input joins the output's channels.

    With `released_names` its state_dict says `norm.1`, `conv.1`, ... and it loads such
    state_dicts (strictly too), through a hook each way.
    """

    def __init__(self, inplanes: int, growth: int, bn_size: int, released_names: bool) -> None:
        super().__init__(OrderedDict([
            ('norm1', nn.BatchNorm3d(inplanes)),
            ('relu1', nn.ReLU(inplace=True)),
            ('conv1', conv(inplanes, bn_size * growth, 1)),
            ('norm2', nn.BatchNorm3d(bn_size * growth)),
            ('relu2', nn.ReLU(inplace=True)),
            ('conv2', conv(bn_size * growth, growth, 3, 1, 1)),
        ]))
        if released_names:
            self.register_state_dict_post_hook(
                lambda module, state_dict, prefix, metadata: rename_keys(
                    state_dict, prefix, MODERN_LAYER_NAME, r'\1.\2.'
                )
            )
            self.register_load_state_dict_pre_hook(
                lambda module, state_dict, prefix, *_: rename_keys(
                    state_dict, prefix, RELEASED_LAYER_NAME, r'\1\2.'
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class DenseNet(nn.Module):
    """`features` (conv0, norm0, relu0, pool0, denseblock*, transition*, norm5), `classifier`."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        growth_rate: int = 32,
        bn_size: int = 4,
        released_names: bool = False,
        stem_temporal_kernel: int = 7,
        stem_temporal_stride: int = 1,
        stem_max_pool: bool = True,
    ) -> None:
        super().__init__()
        stem = reference_stem(stem_temporal_kernel, stem_temporal_stride, stem_max_pool)
        names = ('conv0', 'norm0', 'relu0', 'pool0')
        self.features = nn.Sequential(OrderedDict(zip(names, stem, strict=True)))
        features = 64
        counts = DENSE_BLOCKS[depth]
        for index, count in enumerate(counts, start=1):
            block = nn.Sequential()
            for layer in range(count):
                inplanes = features + layer * growth_rate
                dense = DenseLayer(inplanes, growth_rate, bn_size, released_names)
                block.add_module(f'denselayer{layer + 1}', dense)
            self.features.add_module(f'denseblock{index}', block)
            features += count * growth_rate
            if index < len(counts):
                transition = nn.Sequential(OrderedDict([
                    ('norm', nn.BatchNorm3d(features)),
                    ('relu', nn.ReLU(inplace=True)),
                    ('conv', conv(features, features // 2, 1)),
                    ('pool', nn.AvgPool3d(2, 2)),
                ]))
                self.features.add_module(f'transition{index}', transition)
                features //= 2
        self.features.add_module('norm5', nn.BatchNorm3d(features))
        self.classifier = nn.Linear(features, num_classes)
        init_reference(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x))
        return self.classifier(out.mean(dim=(2, 3, 4)))


# ---------------------------------------------------------------------------------------------
# torchvision's VideoResNet: r3d, mc3, r2plus1d.


def midplanes(inplanes: int, planes: int) -> int:
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


def builder_conv(kind: str, cin: int, cout: int, mid: int, stride: int) -> nn.Module:
    if kind == '3d':
        return conv(cin, cout, 3, stride, 1)
    if kind == '2d':
        return conv(cin, cout, (1, 3, 3), (1, stride, stride), (0, 1, 1))
    return nn.Sequential(
        conv(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1)),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        conv(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0)),
    )


class VideoBasic(nn.Module):
    def __init__(self, kind, inplanes, planes, stride, downsample):
        super().__init__()
        mid = midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            builder_conv(kind, inplanes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU()
        )
        self.conv2 = nn.Sequential(
            builder_conv(kind, planes, planes, mid, 1), nn.BatchNorm3d(planes)
        )
        self.downsample = downsample

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + residual(self, x))


class VideoBottleneck(nn.Module):
    def __init__(self, kind, inplanes, planes, stride, downsample):
        super().__init__()
        mid = midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(conv(inplanes, planes, 1), nn.BatchNorm3d(planes), nn.ReLU())
        self.conv2 = nn.Sequential(
            builder_conv(kind, planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU()
        )
        self.conv3 = nn.Sequential(conv(planes, 4 * planes, 1), nn.BatchNorm3d(4 * planes))
        self.downsample = downsample

    def forward(self, x):
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + residual(self, x))


class VideoResNet(nn.Module):
    """`stem`, `layer1`..`layer4`, adaptive average pool, `fc`, with torchvision's init."""

    def __init__(
        self,
        arch: str,
        depth: int = 18,
        num_classes: int = 400,
        shortcut: str = 'B',
        shortcut_a_stop_gradient: bool = True,
    ) -> None:
        super().__init__()
        if arch == 'r2plus1d':
            self.stem = nn.Sequential(
                conv(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3)),
                nn.BatchNorm3d(45),
                nn.ReLU(inplace=True),
                conv(45, 64, (3, 1, 1), 1, (1, 0, 0)),
                nn.BatchNorm3d(64),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                conv(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3)), nn.BatchNorm3d(64), nn.ReLU()
            )
        kind, counts = BLOCKS[depth]
        block, expansion = (VideoBasic, 1) if kind == 'basic' else (VideoBottleneck, 4)
        inplanes = 64
        stages = zip(counts, TORCHVISION_CONVS[arch], strict=True)
        for stage, (count, conv_kind) in enumerate(stages):
            planes, stride = 64 * 2**stage, 1 if stage == 0 else 2
            shortcut_stride = (1, stride, stride) if conv_kind == '2d' else (stride,) * 3
            first = downsample(
                inplanes, planes * expansion, shortcut_stride, shortcut, shortcut_a_stop_gradient
            )
            blocks = [block(conv_kind, inplanes, planes, stride, first)]
            inplanes = planes * expansion
            blocks += [block(conv_kind, inplanes, planes, 1, None) for _ in range(count - 1)]
            setattr(self, f'layer{stage + 1}', nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3, 4)))


def from_config(model_config: Any, densenet_released_names: bool = False) -> nn.Module:
    """The PyTorch layout of a `config.model` (r3d_jax/defaults.py)."""
    c = model_config
    if c.arch in TORCHVISION_CONVS:
        return VideoResNet(c.arch, c.depth, c.num_classes, c.shortcut, c.shortcut_a_stop_gradient)
    stem = {
        'stem_temporal_kernel': c.stem_temporal_kernel,
        'stem_temporal_stride': c.stem_temporal_stride,
        'stem_max_pool': c.stem_max_pool,
    }
    if c.arch == 'densenet':
        return DenseNet(
            c.depth, c.num_classes, c.growth_rate, c.bn_size, densenet_released_names, **stem
        )
    if c.arch not in REFERENCE_ARCHS:
        raise ValueError(f'No PyTorch layout for arch {c.arch!r}.')
    return ReferenceResNet(
        c.arch,
        c.depth,
        c.num_classes,
        c.shortcut,
        c.shortcut_a_stop_gradient,
        c.widen_factor,
        c.cardinality,
        **stem,
    )
