"""The dataset layouts, by name (`config.data.dataset`, `--dataset`), and their identity on disk.

A built dataset lives at `<data_dir>/<layout>_frames/<config name>/<version>`, the config name
being the layout's identity, the frame size and, when not the default 90, the JPEG quality:
`ucf101_frames/split1_128px`, `hmdb51_frames/split2_128px_q95`, `kinetics_frames/k400_128px`,
`activitynet_frames/v1_3_128px`, `video_list_frames/<your name>_128px`.
"""

from __future__ import annotations

import ml_collections

from r3d_jax.data.layouts import activitynet, hmdb51, kinetics, ucf101, video_list
from r3d_jax.data.layouts.common import (
    DatasetContents,
    Layout,
    SourceError,
    VideoEntry,
)
from r3d_jax.data.video_decoding import JPEG_QUALITY

__all__ = [
    'LAYOUTS',
    'DatasetContents',
    'Layout',
    'SourceError',
    'VideoEntry',
    'config_name',
    'dataset_name',
    'flag_of',
    'get',
]

LAYOUTS: dict[str, Layout] = {
    module.LAYOUT.name: module.LAYOUT
    for module in (ucf101, hmdb51, video_list, kinetics, activitynet)
}

# The build flags named otherwise than the `config.data` field they set.
FLAG_OF_FIELD = {'split_number': 'split'}


def flag_of(field: str) -> str:
    """The build flag (`python -m r3d_jax.data.build`) that sets `config.data.<field>`."""
    return FLAG_OF_FIELD.get(field, field)


def get(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(
            f'config.data.dataset (--dataset) must be one of {sorted(LAYOUTS)}, got {name!r}.'
        )
    return LAYOUTS[name]


def dataset_name(layout: Layout) -> str:
    """The TFDS dataset name, the first folder under the data directory."""
    return f'{layout.name}_frames'


def config_name(data: ml_collections.ConfigDict) -> str:
    """The builder config name of `config.data`: which dataset, frame size and JPEG quality."""
    layout = get(data.dataset)
    side, quality = data.frame_short_side, data.jpeg_quality
    if not isinstance(side, int) or side < 1:
        raise ValueError(
            'config.data.frame_short_side (--frame_short_side) must be a positive integer, '
            f'got {side!r}.'
        )
    if not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(
            f'config.data.jpeg_quality (--jpeg_quality) must be an integer in [1, 95], '
            f'got {quality!r}.'
        )
    name = f'{layout.identity(data)}_{side}px'
    return name if quality == JPEG_QUALITY else f'{name}_q{quality}'
