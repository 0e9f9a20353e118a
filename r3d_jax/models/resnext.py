"""3D ResNeXts: the reference's `models/resnext.py` (CVPR 2018 branch).

The reference ResNet with bottlenecks of expansion 2 over stage widths 128, 256, 512 and 1024
(outputs 256 ... 2048 channels), whose 3x3x3 conv is split into `cardinality` groups; its width
is cardinality * (stage width // 32), 128 ... 1024 for the released cardinality 32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from r3d_jax.models import layers, resnet

ARCHITECTURES = {depth: resnet.ARCHITECTURES[depth] for depth in (50, 101, 152)}
STAGE_WIDTHS = (128, 256, 512, 1024)
EXPANSION = 2
# The stage width per unit of cardinality in the grouped conv's width formula.
GROUP_WIDTH_DIVISOR = 32


class ResNeXt3D(resnet.ResNet3D):
    """The reference's 3D ResNeXt, depths 50, 101 and 152."""

    depth: int = 101
    cardinality: int = 32

    depths = ARCHITECTURES

    def check_fields(self) -> None:
        super().check_fields()
        layers.check_positive_integers(self, ('cardinality',))

    def stage_block(self, kind: str, stage: int) -> Callable[..., layers.ResidualBlock]:
        del kind  # Always a bottleneck.
        planes = STAGE_WIDTHS[stage - 1]
        return functools.partial(
            resnet.Bottleneck,
            mid_features=self.cardinality * (planes // GROUP_WIDTH_DIVISOR),
            out_features=planes * EXPANSION,
            groups=self.cardinality,
        )
