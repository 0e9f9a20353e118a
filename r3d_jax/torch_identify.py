"""Which model a PyTorch state_dict holds, read from its names and shapes alone.

The importer uses it to say what a file that does not fit the config looks like, and which
`config.model` fields would make it fit. Families are told apart by their names and shapes:
`features.denseblock*` (DenseNet), `stem.*` (torchvision; `stem.3` for r(2+1)d, 1x3x3 convs
in `layer2` for mc3), and for the reference's residual networks: a `bn1` that normalises the
block's input (pre-activation), a grouped 3x3x3 conv (ResNeXt) and the bottleneck's expansion
(4: ResNet; 2: wide ResNet). Depths come from the blocks (or dense layers) per stage.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from r3d_jax.models import ARCHITECTURES, densenet, resnet

Shapes = Mapping[str, tuple[int, ...]]

_RESIDUAL_BLOCK = re.compile(r'^layer([1-4])\.(\d+)\.')
_DENSE_LAYER = re.compile(r'^features\.denseblock([1-4])\.denselayer(\d+)\.')
_DESCRIBED_FIELDS = ('widen_factor', 'cardinality', 'growth_rate', 'bn_size', 'shortcut')


@dataclasses.dataclass(frozen=True)
class Identified:
    """What a state_dict looks like: a family (and depth, when its blocks match one)."""

    arch: str
    depth: int | None
    fields: dict[str, Any]  # The other config.model fields the file shows.
    structure: str  # What the depth was read from, e.g. 'bottleneck blocks [3, 4, 23, 3]'.

    def description(self) -> str:
        """E.g. 'ResNeXt-101 checkpoint (bottleneck blocks [3, 4, 23, 3], cardinality 32, ...)'."""
        family = ARCHITECTURES[self.arch]
        name = family.name(self.depth) if self.depth else f'{family.title} of unknown depth'
        details = [self.structure] + [
            f'{field} {self.fields[field]}' for field in _DESCRIBED_FIELDS if field in self.fields
        ]
        return f'{name} checkpoint ({", ".join(details)})'


def identify(shapes: Shapes) -> Identified | None:
    """The model `shapes` (state_dict key -> shape, released spelling) holds, if known."""
    if any(_DENSE_LAYER.match(key) for key in shapes):
        return _densenet(shapes)
    if 'stem.0.weight' in shapes:
        return _torchvision(shapes)
    if 'conv1.weight' in shapes and any(_RESIDUAL_BLOCK.match(key) for key in shapes):
        return _reference_residual(shapes)
    return None


def _blocks_per_stage(shapes: Shapes, pattern: re.Pattern[str]) -> tuple[int, ...]:
    counts = [0, 0, 0, 0]
    for key in shapes:
        match = pattern.match(key)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            counts[stage] = max(counts[stage], index + 1)
    return tuple(counts)


def _depth(arch: str, structure: Any, depths: Mapping[int, Any]) -> int | None:
    matching = [depth for depth, spec in depths.items() if spec == structure]
    return matching[0] if matching and matching[0] in ARCHITECTURES[arch].depths else None


def _shortcut(shapes: Shapes) -> str:
    return 'B' if any('.downsample.' in key for key in shapes) else 'A'


def _densenet(shapes: Shapes) -> Identified:
    # Dense layers are numbered from 1.
    layers = tuple(n - 1 if n else 0 for n in _blocks_per_stage(shapes, _DENSE_LAYER))
    fields: dict[str, Any] = {}
    first = 'features.denseblock1.denselayer1'
    if f'{first}.conv.2.weight' in shapes and f'{first}.conv.1.weight' in shapes:
        growth = shapes[f'{first}.conv.2.weight'][0]
        fields['growth_rate'] = growth
        fields['bn_size'] = shapes[f'{first}.conv.1.weight'][0] // growth
    stem = shapes.get('features.conv0.weight')
    if stem and len(stem) == 5:
        fields['stem_temporal_kernel'] = stem[2]
    depth = _depth('densenet', layers, densenet.ARCHITECTURES)
    return Identified('densenet', depth, fields, f'dense layers {list(layers)}')


def _residual_structure(shapes: Shapes) -> tuple[str, tuple[int, ...]]:
    blocks = _blocks_per_stage(shapes, _RESIDUAL_BLOCK)
    bottleneck = any(re.match(r'^layer1\.0\.conv3\.', key) for key in shapes)
    return ('bottleneck' if bottleneck else 'basic'), blocks


def _torchvision(shapes: Shapes) -> Identified:
    kind, blocks = _residual_structure(shapes)
    layer2_conv = shapes.get('layer2.0.conv1.0.weight')
    if 'stem.3.weight' in shapes:
        arch = 'r2plus1d'
    elif layer2_conv is not None and len(layer2_conv) == 5 and layer2_conv[2] == 1:
        arch = 'mc3'  # Its stages 2-4 convolve 1x3x3.
    else:
        arch = 'r3d'
    depth = _depth(arch, (kind, blocks), resnet.ARCHITECTURES)
    fields = {'shortcut': _shortcut(shapes)}
    return Identified(arch, depth, fields, f'{kind} blocks {list(blocks)}, torchvision names')


def _reference_residual(shapes: Shapes) -> Identified:
    kind, blocks = _residual_structure(shapes)
    fields: dict[str, Any] = {}
    arch = 'resnet'
    conv1, bn1 = shapes.get('layer2.0.conv1.weight'), shapes.get('layer2.0.bn1.weight')
    if conv1 and bn1 and bn1[0] == conv1[1] != conv1[0]:
        arch = 'preresnet'  # bn1 normalises the block's input, before conv1.
    elif kind == 'bottleneck':
        mid = shapes.get('layer1.0.conv1.weight', (0,))[0]
        out = shapes.get('layer1.0.conv3.weight', (0,))[0]
        conv2 = shapes.get('layer1.0.conv2.weight', (0, 0))
        groups = mid // conv2[1] if conv2[1] else 1
        if groups > 1:
            arch, fields['cardinality'] = 'resnext', groups
        elif out == 2 * mid:
            arch, fields['widen_factor'] = 'wideresnet', mid // resnet.STAGE_WIDTHS[0]
    fields['shortcut'] = _shortcut(shapes)
    stem = shapes['conv1.weight']
    if len(stem) == 5:
        fields['stem_temporal_kernel'] = stem[2]
    depth = _depth(arch, (kind, blocks), resnet.ARCHITECTURES)
    return Identified(arch, depth, fields, f'{kind} blocks {list(blocks)}')


def hints(identified: Identified | None, model_config: Any) -> list[str]:
    """What to change in `config.model` (or what the file is) so that the file fits."""
    if identified is None:
        return [
            'its names match none of the layouts this version reads (the reference code\'s '
            "resnet, preresnet, wideresnet, resnext, densenet; torchvision's r3d, mc3, r2plus1d)."
        ]
    changes = {
        field: value
        for field, value in identified.fields.items()
        if model_config.get(field) != value
    }
    if identified.arch != model_config.arch or (
        identified.depth and identified.depth != model_config.depth
    ):
        changes = {'arch': identified.arch, 'depth': identified.depth, **changes}
        settings = ', '.join(
            f'config.model.{field}={value!r}' for field, value in changes.items() if value
        )
        return [f'the file looks like a {identified.description()}; set {settings}.']
    lines = []
    for field, value in changes.items():
        if field == 'shortcut':
            has = 'has downsample convs' if value == 'B' else 'has no downsample convs'
            reason = f'the checkpoint {has}, so it uses shortcut {value}'
        elif field == 'stem_temporal_kernel':
            reason = f'the stem kernel is {value} frames deep'
        else:
            reason = f'the checkpoint has {field} {value}'
        lines.append(f'{reason}; set config.model.{field}={value!r}.')
    return lines
