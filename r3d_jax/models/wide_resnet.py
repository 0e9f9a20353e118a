"""Wide 3D ResNets: the reference's `models/wide_resnet.py` (CVPR 2018 branch).

The reference ResNet with bottlenecks of expansion 2 whose stage widths are multiplied by
`widen_factor` (the reference's `--wide_resnet_k`): 64k, 128k, 256k and 512k, so outputs of
256 ... 2048 channels for the released k = 2. The stem stays 64 channels wide.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from r3d_jax.models import layers, resnet

ARCHITECTURES = {50: resnet.ARCHITECTURES[50]}
EXPANSION = 2


class WideResNet3D(resnet.ResNet3D):
    """The reference's wide 3D ResNet-50."""

    depth: int = 50
    widen_factor: int = 2

    depths = ARCHITECTURES

    def check_fields(self) -> None:
        super().check_fields()
        layers.check_positive_integers(self, ('widen_factor',))

    def stage_block(self, kind: str, stage: int) -> Callable[..., layers.ResidualBlock]:
        del kind  # Always a bottleneck.
        wide = resnet.STAGE_WIDTHS[stage - 1] * self.widen_factor
        return functools.partial(
            resnet.Bottleneck, mid_features=wide, out_features=wide * EXPANSION
        )
