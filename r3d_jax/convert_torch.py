r"""PyTorch weights both ways: released checkpoints into r3d-jax, r3d-jax checkpoints back.

Import (a reference checkpoint of any family, or a torchvision r3d/mc3/r2plus1d state_dict):

    python -m r3d_jax.convert_torch --checkpoint=resnext-101-kinetics.pth \
        --config=configs/resnext101_ucf101_finetune.py --output=weights/resnext101_kinetics

reads a reference checkpoint file (a dict with `state_dict`, as the reference's training saves
it; DataParallel's `module.` prefixes and old files without `num_batches_tracked` are fine) or
a bare state_dict, with `torch.load(weights_only=True)`; checks every tensor's name and shape
against the model that the config builds (`config.model.arch`, `depth`, ...), saying which
family and depth the file holds when it does not fit; and writes an r3d-jax checkpoint
(`checkpoints.save_variables`). When only the classifier's class count differs (Kinetics-400
weights for UCF-101), the backbone is kept and the head is freshly initialised. DenseNet files
may spell their dense layers as released (`norm.1`) or as PyTorch accepts today (`norm1`).

Export (any r3d-jax checkpoint: a training step directory or an imported one):

    python -m r3d_jax.convert_torch --to_torch --checkpoint=workdirs/x/checkpoints/1000 \
        --output=model.pth

writes a file shaped like the reference's checkpoints: a dict with `epoch` (the checkpoint's,
0 for imported weights), `arch` (the reference's `<model>-<depth>`, e.g. `resnext-101`, or
torchvision's builder name, e.g. `r2plus1d_18`), `state_dict` (the reference's names and
[O, I, T, H, W] layouts, DenseNet's dotted names included, or torchvision's names, with
`num_batches_tracked` set to the checkpoint's training step) and `optimizer`: None, because
r3d-jax's optimiser state has no PyTorch counterpart (the reference reads only `state_dict`
to fine-tune). The reference's own model class loads the `state_dict` with `strict=True`;
`--module_prefix` puts DataParallel's `module.` before every key, as the reference's training
script expects when it wraps the model in DataParallel before loading. Importing and exporting
again gives bit-equal tensors.

From Python: `torch_to_flax_variables(state_dict, config)` and
`flax_to_torch_state_dict(variables, config.model)`. PyTorch is an optional dependency
(requirements-torch.txt), imported only to read and write files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from r3d_jax import checkpoints, defaults, torch_identify
from r3d_jax.models import (
    architecture,
    create_model,
    expected_variables,
    upgrade_model_config,
)
from r3d_jax.models.layers import classifier_head

logger = logging.getLogger(__name__)

# Flax leaf name -> PyTorch tensor name, per variable collection.
_LEAF_NAMES = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}
_COUNTER = 'num_batches_tracked'
# Parameter shapes do not depend on the clip size; this clip fits every layout and stem.
_PROBE_CLIP_SHAPE = (1, 64, 64, 64, 3)
_LIST_LIMIT = 20


class TorchConversionError(checkpoints.CheckpointError):
    """A PyTorch checkpoint cannot be read, or does not fit the configured model."""


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What the conversion did, for logs and checkpoint metadata."""

    layout: str  # State-dict naming read: 'reference' or 'torchvision'.
    model: str  # The model the weights were read into, e.g. 'ResNeXt-101'.
    converted_tensors: int
    ignored_counters: int  # BatchNorm `num_batches_tracked` entries, which Flax does not use.
    checkpoint_num_classes: int
    head_reinitialised: bool
    notes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Target:
    """A Flax variable and the PyTorch tensor it corresponds to."""

    collection: str
    path: tuple[str, ...]
    torch_shape: tuple[int, ...]


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


def torch_targets(model_config: Any, abstract_variables: Any) -> dict[str, _Target]:
    """PyTorch state_dict name -> the Flax variable it holds, for the model of `model_config`."""
    family = architecture(model_config)
    targets = {}
    for collection in ('params', 'batch_stats'):
        for path, leaf in _flatten(abstract_variables[collection]):
            *modules, name = path
            module = family.torch_module_name(tuple(modules), model_config.arch)
            key = f'{module}.{_LEAF_NAMES[(collection, name)]}'
            targets[key] = _Target(collection, path, _torch_shape(leaf.shape))
    return targets


def torch_to_flax_variables(
    state_dict: Mapping[str, Any], config: Any, *, rng: jax.Array | None = None
) -> tuple[dict[str, Any], ConversionReport]:
    """Flax {'params', 'batch_stats'} for the model of `config` from a PyTorch state_dict.

    Every tensor name and shape is checked; any mismatch raises one TorchConversionError that
    lists the missing, unexpected and mis-shaped keys and says what the file holds. The one
    tolerated mismatch is the classifier's class count: the head is then initialised afresh
    from `rng` (default key 0), which is logged and recorded in the report. Conv kernels
    [O, I, T, H, W] become [T, H, W, I, O]; the classifier [classes, features] [features,
    classes].
    """
    model_config = config.model
    family = architecture(model_config)
    model = create_model(config)
    alias = family.torch_key_alias or (lambda key: key)
    arrays = {
        alias(key): _to_numpy(value) for key, value in strip_module_prefix(state_dict).items()
    }
    ignored = {key for key in arrays if key.endswith(f'.{_COUNTER}')}
    arrays = {key: value for key, value in arrays.items() if key not in ignored}
    expected = torch_targets(model_config, expected_variables(model, _PROBE_CLIP_SHAPE))

    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    misshaped = sorted(
        key for key in set(expected) & set(arrays) if arrays[key].shape != expected[key].torch_shape
    )
    head = model.head_name
    head_keys = (f'{head}.weight', f'{head}.bias')
    checkpoint_num_classes = arrays[head_keys[1]].shape[0] if head_keys[1] in arrays else -1
    head_features = expected[head_keys[0]].torch_shape[1]
    head_only = (
        not missing
        and not unexpected
        and set(misshaped) <= set(head_keys)
        and arrays[head_keys[0]].shape == (checkpoint_num_classes, head_features)
    )
    if (missing or unexpected or misshaped) and not head_only:
        raise TorchConversionError(
            _mismatch_message(arrays, expected, missing, unexpected, misshaped, config)
        )
    reinitialise_head = bool(misshaped)  # Past the check, only the head's class count differs.

    variables: dict[str, Any] = {'params': {}, 'batch_stats': {}}
    for key, target in expected.items():
        if key not in misshaped:
            _set(variables[target.collection], target.path, _to_flax_layout(arrays[key]))

    notes = []
    if reinitialise_head:
        classifier = classifier_head(model_config.num_classes, head_features, model.head_init)
        head_rng = jax.random.key(0) if rng is None else rng
        fresh = classifier.init(head_rng, jnp.zeros((1, head_features), jnp.float32))['params']
        variables['params'][head] = jax.tree.map(np.asarray, fresh)
        note = (
            f'The checkpoint classifies {checkpoint_num_classes} classes, the config '
            f'{model_config.num_classes} (config.model.num_classes): kept the backbone and '
            f'initialised a new {head} head.'
        )
        logger.warning('%s', note)
        notes.append(note)

    report = ConversionReport(
        layout=family.torch_layout,
        model=family.name(model_config.depth),
        converted_tensors=len(expected) - len(misshaped),
        ignored_counters=len(ignored),
        checkpoint_num_classes=checkpoint_num_classes,
        head_reinitialised=reinitialise_head,
        notes=tuple(notes),
    )
    return variables, report


def flax_to_torch_state_dict(
    variables: Mapping[str, Any], model_config: Any, *, num_batches_tracked: int = 0
) -> dict[str, Any]:
    """The PyTorch state_dict (released names, PyTorch layouts) of r3d-jax `variables`.

    Every BatchNorm also gets `num_batches_tracked` (a long scalar), which PyTorch's strict
    loading requires; its value does not enter PyTorch's computation with a fixed momentum.
    """
    import torch

    targets = torch_targets(model_config, variables)
    state_dict: dict[str, Any] = {}
    for key, target in targets.items():
        value = _get(variables[target.collection], target.path)
        state_dict[key] = torch.from_numpy(_to_torch_layout(np.asarray(value, np.float32)))
        if key.endswith('.running_var'):
            counter = f'{key.removesuffix(".running_var")}.{_COUNTER}'
            state_dict[counter] = torch.tensor(num_batches_tracked, dtype=torch.long)
    return state_dict


def export_checkpoint(checkpoint_dir: str, output: str, *, module_prefix: bool = False) -> str:
    """Writes the r3d-jax checkpoint `checkpoint_dir` as a reference-style PyTorch file.

    Returns the file's `arch`. The file is written under a temporary name and renamed when
    complete, so a partial file never carries the final name.
    """
    import ml_collections
    import torch

    if os.path.exists(output):
        raise TorchConversionError(f'{output} already exists; choose a new output file.')
    variables, metadata = checkpoints.load_variables(checkpoint_dir)
    if not metadata.get('model'):
        raise TorchConversionError(
            f'Checkpoint {checkpoint_dir} metadata lacks "model"; it cannot be exported.'
        )
    config = defaults.get_config()  # Its input fields do not change any shape.
    config.model = ml_collections.ConfigDict(upgrade_model_config(metadata['model']))
    model_config = config.model
    family = architecture(model_config)
    expected = expected_variables(create_model(config), _PROBE_CLIP_SHAPE)
    checkpoints.check_variables_fit(variables, expected, f'Checkpoint {checkpoint_dir}')
    state_dict = flax_to_torch_state_dict(
        variables, model_config, num_batches_tracked=int(metadata.get('step', 0))
    )
    if module_prefix:
        state_dict = {f'module.{key}': value for key, value in state_dict.items()}
    arch = family.checkpoint_arch(model_config.depth)
    file = {
        'epoch': int(metadata.get('epoch', 0)),
        'arch': arch,
        'state_dict': state_dict,
        'optimizer': None,
    }
    temporary = f'{output}.partial'
    torch.save(file, temporary)
    os.replace(temporary, output)
    return arch


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
    return tuple(flax_shape)


def _to_flax_layout(array: np.ndarray) -> np.ndarray:
    """A float32 copy in Flax's layout (a copy: torch tensors share memory with `.numpy()`)."""
    if array.ndim == 5:
        array = array.transpose(2, 3, 4, 1, 0)
    elif array.ndim == 2:
        array = array.T
    return np.array(array, dtype=np.float32, order='C', copy=True)


def _to_torch_layout(array: np.ndarray) -> np.ndarray:
    if array.ndim == 5:
        array = array.transpose(4, 3, 0, 1, 2)
    elif array.ndim == 2:
        array = array.T
    return np.array(array, dtype=np.float32, order='C', copy=True)


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[Any, Any]]:
    for name, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, (*prefix, name))
        else:
            yield (*prefix, name), value


def _set(tree: dict[str, Any], path: tuple[str, ...], value: np.ndarray) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def _listing(title: str, keys: list[str]) -> str:
    shown = ', '.join(keys[:_LIST_LIMIT])
    more = f' ... and {len(keys) - _LIST_LIMIT} more' if len(keys) > _LIST_LIMIT else ''
    return f'{title} ({len(keys)}): {shown}{more}'


def _mismatch_message(
    arrays: Mapping[str, np.ndarray],
    expected: Mapping[str, _Target],
    missing: list[str],
    unexpected: list[str],
    misshaped: list[str],
    config: Any,
) -> str:
    model = config.model
    family = architecture(model)
    names = ('arch', *dict.fromkeys(('depth', *family.fields)))
    fields = ', '.join(f'{field}={model[field]!r}' for field in names)
    lines = [
        f'The PyTorch weights do not fit config.model ({fields}, '
        f'num_classes={model.num_classes}), a {family.name(model.depth)}.'
    ]
    shapes = {key: tuple(value.shape) for key, value in arrays.items()}
    identified = torch_identify.identify(shapes)
    lines += [f'hint: {hint}' for hint in torch_identify.hints(identified, model)]
    if missing:
        lines.append(_listing('missing keys', missing))
    if unexpected:
        lines.append(_listing('unexpected keys', unexpected))
    if misshaped:
        listed = [
            f'{key} {shapes[key]} (expected {expected[key].torch_shape})' for key in misshaped
        ]
        lines.append(_listing('mis-shaped keys', listed))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Command line.


def import_checkpoint(config: Any, source: str, output: str) -> ConversionReport:
    """Converts the PyTorch file `source` for the model of `config` into checkpoint `output`."""
    source = os.path.abspath(source)
    variables, report = torch_to_flax_variables(load_torch_state_dict(source), config)
    checkpoints.save_variables(
        output,
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
    return report


def main(argv: list[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    values = flags.FLAGS
    try:
        if values.to_torch:
            arch = export_checkpoint(
                values.checkpoint, values.output, module_prefix=values.module_prefix
            )
            print(f'Wrote {values.output}: {arch} from {values.checkpoint}.')
            return
        if values.config is None:
            sys.exit('error: --config is required to import a PyTorch checkpoint.')
        report = import_checkpoint(values.config, values.checkpoint, values.output)
    except (checkpoints.CheckpointError, defaults.ConfigError, OSError) as error:
        sys.exit(f'error: {error}')
    print(
        f'Wrote {values.output}: {report.converted_tensors} tensors of a {report.model} from '
        f'{values.checkpoint} ({report.layout} names).'
    )
    for note in report.notes:
        print(note)


def define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file('config', None, 'Config of the target model (import).')
    flags.DEFINE_string(
        'checkpoint', None, 'PyTorch file to import, or r3d-jax checkpoint to export.'
    )
    flags.DEFINE_string('output', None, 'New r3d-jax checkpoint directory, or new .pth file.')
    flags.DEFINE_bool('to_torch', False, 'Export an r3d-jax checkpoint to a PyTorch file.')
    flags.DEFINE_bool('module_prefix', False, 'Export: put `module.` before every key.')
    flags.mark_flags_as_required(['checkpoint', 'output'])


def run() -> None:
    """The console entry point: flags as `--flag=value`."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == '__main__':
    run()
