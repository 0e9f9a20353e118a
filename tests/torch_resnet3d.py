"""The 3D ResNet layout in PyTorch, written independently of the JAX model to check it.

Two naming schemes, one set of maths:
- `stem='reference'`: the layout and state_dict names of Hara et al.'s reference code
  (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.bn1`, ..., `layer2.0.downsample.0/1`, `fc`);
- `stem='torchvision'`: torchvision's VideoResNet names and its r3d stem (`stem.0`, `stem.1`,
  `layer1.0.conv1.0`, `layer1.0.conv1.1`, ..., `downsample.0/1`, `fc`), a 3x7x7 conv without
  max-pool.
Clips are [N, 3, T, H, W] floats, already normalised. Importable without pytest, e.g.
`from tests.torch_resnet3d import resnet3d`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# depth -> (block kind, blocks per stage), as the reference's resnet10 ... resnet200.
ARCHITECTURES = {
    10: ('basic', [1, 1, 1, 1]),
    18: ('basic', [2, 2, 2, 2]),
    34: ('basic', [3, 4, 6, 3]),
    50: ('bottleneck', [3, 4, 6, 3]),
    101: ('bottleneck', [3, 4, 23, 3]),
    152: ('bottleneck', [3, 8, 36, 3]),
    200: ('bottleneck', [3, 24, 36, 3]),
}
EXPANSION = {'basic': 1, 'bottleneck': 4}
WIDTHS = [64, 128, 256, 512]


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Subsample by `stride`, zero-pad to `planes` channels; detached like the reference's .data."""

    def __init__(self, planes: int, stride: int, stop_gradient: bool) -> None:
        super().__init__()
        self.planes = planes
        self.stride = stride
        self.stop_gradient = stop_gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        if self.stop_gradient:
            out = out.detach()
        zeros = out.new_zeros(out.size(0), self.planes - out.size(1), *out.shape[2:])
        return torch.cat([out, zeros], dim=1)


def make_downsample(
    inplanes: int, planes: int, stride: int, shortcut: str, stop_gradient: bool
) -> nn.Module | None:
    if stride == 1 and inplanes == planes:
        return None
    if shortcut == 'A':
        return ShortcutA(planes, stride, stop_gradient)
    return nn.Sequential(conv1x1x1(inplanes, planes, stride), nn.BatchNorm3d(planes))


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = conv3x3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = conv1x1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class TorchvisionBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Sequential(
            conv3x3x3(inplanes, planes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv3x3x3(planes, planes), nn.BatchNorm3d(planes))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class TorchvisionBottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Sequential(
            conv1x1x1(inplanes, planes), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(
            conv3x3x3(planes, planes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv3 = nn.Sequential(conv1x1x1(planes, planes * 4), nn.BatchNorm3d(planes * 4))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


BLOCKS = {
    'reference': {'basic': BasicBlock, 'bottleneck': Bottleneck},
    'torchvision': {'basic': TorchvisionBasicBlock, 'bottleneck': TorchvisionBottleneck},
}


def _make_stages(
    model: nn.Module, stem: str, depth: int, shortcut: str, shortcut_a_stop_gradient: bool
) -> int:
    """Adds layer1..layer4 to `model`; returns the width of the last stage's output."""
    kind, blocks_per_stage = ARCHITECTURES[depth]
    block = BLOCKS[stem][kind]
    inplanes = 64
    for stage, (width, num_blocks) in enumerate(zip(WIDTHS, blocks_per_stage, strict=True)):
        stride = 1 if stage == 0 else 2
        planes = width * EXPANSION[kind]
        downsample = make_downsample(inplanes, planes, stride, shortcut, shortcut_a_stop_gradient)
        blocks = [block(inplanes, width, stride, downsample)]
        blocks += [block(planes, width, 1, None) for _ in range(1, num_blocks)]
        setattr(model, f'layer{stage + 1}', nn.Sequential(*blocks))
        inplanes = planes
    return inplanes


def _init_like_reference(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)


def _classify(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
    return model.fc(x.mean(dim=(2, 3, 4)))


class ReferenceResNet3D(nn.Module):
    """The reference layout: 7x7x7 stem (configurable temporal kernel and stride) + max-pool."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        shortcut: str,
        shortcut_a_stop_gradient: bool,
        stem_temporal_kernel: int,
        stem_temporal_stride: int,
        stem_max_pool: bool,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(
            3,
            64,
            kernel_size=(stem_temporal_kernel, 7, 7),
            stride=(stem_temporal_stride, 2, 2),
            padding=(stem_temporal_kernel // 2, 3, 3),
            bias=False,
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = (
            nn.MaxPool3d(kernel_size=3, stride=2, padding=1) if stem_max_pool else nn.Identity()
        )
        features = _make_stages(self, 'reference', depth, shortcut, shortcut_a_stop_gradient)
        self.fc = nn.Linear(features, num_classes)
        _init_like_reference(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return _classify(self, x)


class TorchvisionResNet3D(nn.Module):
    """torchvision's VideoResNet with the r3d stem (3x7x7, no max-pool)."""

    def __init__(
        self, depth: int, num_classes: int, shortcut: str, shortcut_a_stop_gradient: bool
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        features = _make_stages(self, 'torchvision', depth, shortcut, shortcut_a_stop_gradient)
        self.fc = nn.Linear(features, num_classes)
        _init_like_reference(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _classify(self, self.stem(x))


def resnet3d(
    depth: int = 18,
    num_classes: int = 400,
    shortcut: str = 'B',
    shortcut_a_stop_gradient: bool = True,
    stem: str = 'reference',
    stem_temporal_kernel: int = 7,
    stem_temporal_stride: int = 1,
    stem_max_pool: bool = True,
) -> nn.Module:
    """The PyTorch model with the options of `config.model` (the stem_* shape 'reference' only)."""
    if depth not in ARCHITECTURES:
        raise ValueError(f'depth {depth} is not one of {sorted(ARCHITECTURES)}.')
    if shortcut not in ('A', 'B'):
        raise ValueError(f"shortcut {shortcut!r} is not 'A' or 'B'.")
    if stem == 'torchvision':
        return TorchvisionResNet3D(depth, num_classes, shortcut, shortcut_a_stop_gradient)
    if stem != 'reference':
        raise ValueError(f"stem {stem!r} is not 'reference' or 'torchvision'.")
    return ReferenceResNet3D(
        depth,
        num_classes,
        shortcut,
        shortcut_a_stop_gradient,
        stem_temporal_kernel,
        stem_temporal_stride,
        stem_max_pool,
    )


def from_config(model_config: Any) -> nn.Module:
    """The PyTorch counterpart of `r3d_jax.models.create_model` for a `config.model`."""
    return resnet3d(
        depth=model_config.depth,
        num_classes=model_config.num_classes,
        shortcut=model_config.shortcut,
        shortcut_a_stop_gradient=model_config.shortcut_a_stop_gradient,
        stem=model_config.stem,
        stem_temporal_kernel=model_config.stem_temporal_kernel,
        stem_temporal_stride=model_config.stem_temporal_stride,
        stem_max_pool=model_config.stem_max_pool,
    )
