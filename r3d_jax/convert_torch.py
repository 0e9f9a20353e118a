"""Imports PyTorch 3D ResNet weights (reference layout or torchvision r3d) into r3d-jax.

    python -m r3d_jax.convert_torch --checkpoint=resnet-18-kinetics.pth \
        --config=configs/r18_ucf101_finetune.py --output=weights/r18_kinetics

reads a reference checkpoint (a dict with `state_dict`, as the reference's training saves it)
or a bare state_dict, checks every tensor's name and shape against the model that the config
builds, and writes an r3d-jax checkpoint (`checkpoints.save_variables`). When only the
classifier's class count differs (Kinetics-400 weights for UCF-101), the backbone is kept and
the head is freshly initialised. `torch_to_flax_variables` does the same in Python.

PyTorch is an optional dependency (requirements-torch.txt), imported only to read files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from r3d_jax import checkpoints
from r3d_jax.models import create_model
from r3d_jax.models.layers import classifier_head
from r3d_jax.models.resnet import ARCHITECTURES

logger = logging.getLogger(__name__)

# Flax leaf name -> PyTorch tensor name, per variable collection.
_LEAF_NAMES = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}
_BLOCK = re.compile(r'^layer([1-4])_(\d+)$')
_TORCH_BLOCK = re.compile(r'^layer([1-4])\.(\d+)\.')
_HEAD = ('fc.weight', 'fc.bias')
_LIST_LIMIT = 20


class TorchConversionError(checkpoints.CheckpointError):
    """A PyTorch checkpoint cannot be read, or does not fit the configured model."""


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What the conversion did, for logs and checkpoint metadata."""

    layout: str  # State-dict naming read: 'reference' or 'torchvision'.
    converted_tensors: int
    ignored_counters: int  # BatchNorm `num_batches_tracked` entries, which Flax does not use.
    checkpoint_num_classes: int
    head_reinitialised: bool
    notes: tuple[str, ...]


def load_torch_state_dict(path: str) -> dict[str, Any]:
    """The state_dict of a PyTorch checkpoint file, `module.` prefixes removed.

    Accepts the reference's checkpoint dicts (`epoch`, `arch`, `state_dict`, `optimizer`, ...)
    and bare state_dicts. Only tensors and plain containers are unpickled (weights_only).
    """
    import torch

    if not os.path.isfile(path):
        raise TorchConversionError(f'PyTorch checkpoint {path} does not exist.')
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files.
        raise TorchConversionError(
            f'{path} could not be read as a PyTorch checkpoint (truncated or corrupt?): '
            f'{type(error).__name__}: {error}'
        ) from error
    if isinstance(loaded, Mapping) and 'state_dict' in loaded:
        loaded = loaded['state_dict']
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        found = sorted(loaded)[:10] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise TorchConversionError(
            f'{path} holds neither a state_dict nor a dict with a "state_dict" entry '
            f'(found {found}).'
        )
    return strip_module_prefix(loaded)


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Removes the `module.` that DataParallel puts before every key."""
    return {key.removeprefix('module.'): value for key, value in state_dict.items()}


def torch_to_flax_variables(
    state_dict: Mapping[str, Any], config: Any, *, rng: jax.Array | None = None
) -> tuple[dict[str, Any], ConversionReport]:
    """Flax {'params', 'batch_stats'} for the model of `config` from a PyTorch state_dict.

    Every tensor name and shape is checked; any mismatch raises one TorchConversionError that
    lists the missing, unexpected and mis-shaped keys with hints. The one tolerated mismatch is
    the classifier's class count: the head is then initialised afresh from `rng` (default
    key 0), which is logged and recorded in the report. Conv kernels [O, I, T, H, W] become
    [T, H, W, I, O]; the fc weight [classes, features] becomes [features, classes].
    """
    layout = config.model.stem
    arrays = {key: _to_numpy(value) for key, value in strip_module_prefix(state_dict).items()}
    ignored = {key for key in arrays if key.endswith('.num_batches_tracked')}
    arrays = {key: value for key, value in arrays.items() if key not in ignored}

    model = create_model(config)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 32, 32, 3), jnp.uint8), train=False)
    )
    expected = {
        torch_name(collection, path, layout): (collection, path, _torch_shape(leaf.shape))
        for collection in ('params', 'batch_stats')
        for path, leaf in _flatten(abstract[collection])
    }

    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    misshaped = sorted(
        key for key in set(expected) & set(arrays) if arrays[key].shape != expected[key][2]
    )
    checkpoint_num_classes = arrays['fc.bias'].shape[0] if 'fc.bias' in arrays else -1
    head_features = expected['fc.weight'][2][1]
    head_only = (
        not missing
        and not unexpected
        and set(misshaped) <= set(_HEAD)
        and arrays['fc.weight'].shape == (checkpoint_num_classes, head_features)
    )
    if (missing or unexpected or misshaped) and not head_only:
        raise TorchConversionError(
            _mismatch_message(arrays, expected, missing, unexpected, misshaped, config)
        )
    reinitialise_head = bool(misshaped)  # Past the check, only the head's class count differs.

    variables: dict[str, Any] = {'params': {}, 'batch_stats': {}}
    for key, (collection, path, _) in expected.items():
        if key not in misshaped:
            _set(variables[collection], path, _to_flax_layout(arrays[key]))

    notes = []
    if reinitialise_head:
        head = classifier_head(config.model.num_classes, head_features)
        head_rng = jax.random.key(0) if rng is None else rng
        head_params = head.init(head_rng, jnp.zeros((1, head_features), jnp.float32))['params']
        variables['params']['fc'] = jax.tree.map(np.asarray, head_params)
        note = (
            f'The checkpoint classifies {checkpoint_num_classes} classes, the config '
            f'{config.model.num_classes} (config.model.num_classes): kept the backbone and '
            'initialised a new fc head.'
        )
        logger.warning('%s', note)
        notes.append(note)

    report = ConversionReport(
        layout=layout,
        converted_tensors=len(expected) - len(misshaped),
        ignored_counters=len(ignored),
        checkpoint_num_classes=checkpoint_num_classes,
        head_reinitialised=reinitialise_head,
        notes=tuple(notes),
    )
    return variables, report


def torch_name(collection: str, path: tuple[str, ...], layout: str) -> str:
    """The PyTorch state_dict name of the Flax variable `collection`/`path` in `layout`."""
    *modules, leaf = path
    names = []
    for module in modules:
        block = _BLOCK.match(module)
        if block:
            names += [f'layer{block.group(1)}', block.group(2)]
        elif module == 'downsample':
            names.append('downsample')
        elif module in ('conv', 'bn'):  # Inside `downsample`: Sequential(conv, bn).
            names.append('0' if module == 'conv' else '1')
        elif layout == 'torchvision' and len(modules) == 1 and module in ('conv1', 'bn1'):
            names += ['stem', '0' if module == 'conv1' else '1']
        elif layout == 'torchvision' and module[:-1] in ('conv', 'bn'):
            names += [f'conv{module[-1]}', '0' if module.startswith('conv') else '1']
        else:
            names.append(module)
    return '.'.join([*names, _LEAF_NAMES[(collection, leaf)]])


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, 'detach'):  # A torch.Tensor; float() also covers half precision.
        value = value.detach().cpu()
        return value.numpy() if not value.is_floating_point() else value.float().numpy()
    return np.asarray(value)


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(flax_shape) == 5:  # Conv kernel [T, H, W, I, O] <- [O, I, T, H, W].
        t, h, w, i, o = flax_shape
        return (o, i, t, h, w)
    if len(flax_shape) == 2:  # Dense kernel [features, classes] <- [classes, features].
        return flax_shape[::-1]
    return flax_shape


def _to_flax_layout(array: np.ndarray) -> np.ndarray:
    """A float32 copy in Flax's layout (a copy: torch tensors share memory with `.numpy()`)."""
    if array.ndim == 5:
        array = array.transpose(2, 3, 4, 1, 0)
    elif array.ndim == 2:
        array = array.T
    return np.array(array, dtype=np.float32, order='C', copy=True)


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()):
    for name, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, (*prefix, name))
        else:
            yield (*prefix, name), value


def _set(tree: dict[str, Any], path: tuple[str, ...], value: np.ndarray) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _listing(title: str, keys: list[str]) -> str:
    shown = ', '.join(keys[:_LIST_LIMIT])
    more = f' ... and {len(keys) - _LIST_LIMIT} more' if len(keys) > _LIST_LIMIT else ''
    return f'{title} ({len(keys)}): {shown}{more}'


def _mismatch_message(
    arrays: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[str, tuple[str, ...], tuple[int, ...]]],
    missing: list[str],
    unexpected: list[str],
    misshaped: list[str],
    config: Any,
) -> str:
    model = config.model
    lines = [
        f'The PyTorch weights do not fit config.model (depth={model.depth}, '
        f'shortcut={model.shortcut!r}, stem={model.stem!r}, num_classes={model.num_classes}).'
    ]
    lines += [f'hint: {hint}' for hint in _hints(arrays, config)]
    if missing:
        lines.append(_listing('missing keys', missing))
    if unexpected:
        lines.append(_listing('unexpected keys', unexpected))
    if misshaped:
        shapes = [
            f'{key} {tuple(arrays[key].shape)} (expected {expected[key][2]})' for key in misshaped
        ]
        lines.append(_listing('mis-shaped keys', shapes))
    return '\n'.join(lines)


def _hints(arrays: Mapping[str, np.ndarray], config: Any) -> list[str]:
    """What the checkpoint looks like, where it differs from the config."""
    model = config.model
    hints = []
    layout = 'torchvision' if 'stem.0.weight' in arrays else 'reference'
    if 'stem.0.weight' in arrays or 'conv1.weight' in arrays:
        if layout != model.stem:
            hints.append(
                f'the checkpoint uses {layout} names (stem conv '
                f'{"stem.0" if layout == "torchvision" else "conv1"}); set '
                f'config.model.stem={layout!r}.'
            )
        stem_kernel = arrays.get('stem.0.weight', arrays.get('conv1.weight'))
        if layout == model.stem == 'reference' and stem_kernel.ndim == 5:
            temporal = stem_kernel.shape[2]
            if temporal != model.stem_temporal_kernel:
                hints.append(
                    f'the stem kernel {tuple(stem_kernel.shape)} is {temporal} frames deep; set '
                    f'config.model.stem_temporal_kernel={temporal}.'
                )

    blocks = [0, 0, 0, 0]
    for key in arrays:
        match = _TORCH_BLOCK.match(key)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    kind = 'bottleneck' if any('.conv3.' in key for key in arrays) else 'basic'
    depths = [d for d, layout in ARCHITECTURES.items() if layout == (kind, tuple(blocks))]
    if depths and depths[0] != model.depth:
        hints.append(
            f'looks like a ResNet-{depths[0]} checkpoint ({kind} blocks {blocks}); set '
            f'config.model.depth={depths[0]}.'
        )

    has_downsample = any('.downsample.' in key for key in arrays)
    if has_downsample and model.shortcut == 'A':
        hints.append(
            'the checkpoint has downsample convs, so it uses shortcut B; set '
            "config.model.shortcut='B'."
        )
    if not has_downsample and model.shortcut == 'B' and any(blocks):
        hints.append(
            'the checkpoint has no downsample convs, so it uses shortcut A; set '
            "config.model.shortcut='A'."
        )
    return hints


def main(argv: list[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    config = flags.FLAGS.config
    source = os.path.abspath(flags.FLAGS.checkpoint)
    state_dict = load_torch_state_dict(source)
    variables, report = torch_to_flax_variables(state_dict, config)
    checkpoints.save_variables(
        flags.FLAGS.output,
        variables,
        {
            'model': config.model.to_dict(),
            'input': config.input.to_dict(),
            'data': {'frame_short_side': config.data.frame_short_side},
            'class_names': None,
            'source': source,
            'conversion': dataclasses.asdict(report),
        },
    )
    logger.info(
        'Wrote %s: %d tensors from %s (%s names).',
        flags.FLAGS.output,
        report.converted_tensors,
        source,
        report.layout,
    )


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file('config', None, 'Config file of the target model.')
    flags.DEFINE_string('checkpoint', None, 'PyTorch checkpoint (.pth) to convert.')
    flags.DEFINE_string('output', None, 'New directory for the r3d-jax checkpoint.')
    flags.mark_flags_as_required(['config', 'checkpoint', 'output'])


if __name__ == '__main__':
    from absl import app

    _define_flags()
    app.run(main)
