"""The model families and their registry: `create_model(config)` builds `config.model.arch`.

Families (one module each, on the shared pieces of `layers.py`):
- the reference code's (Hara et al., CVPR2018 branch): 'resnet' (`resnet.py`), 'preresnet'
  (`pre_act_resnet.py`), 'wideresnet' (`wide_resnet.py`), 'resnext' (`resnext.py`) and
  'densenet' (`densenet.py`);
- torchvision's video ResNets 'r3d', 'mc3' and 'r2plus1d' (`torchvision_video.py`).
`ARCHITECTURES` says, per family, its depths, its own `config.model` fields, the modules the
reference's fine-tuning trains and how its parameters are named in PyTorch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from r3d_jax import defaults
from r3d_jax.defaults import ConfigError
from r3d_jax.models import (
    densenet,
    layers,
    pre_act_resnet,
    resnet,
    resnext,
    torchvision_video,
    wide_resnet,
)

__all__ = [
    'ARCHITECTURES',
    'Architecture',
    'architecture',
    'create_model',
    'expected_variables',
    'init_variables',
    'upgrade_model_config',
    'valid_models',
]

_RESIDUAL_FIELDS = ('depth', 'shortcut', 'shortcut_a_stop_gradient')
_REFERENCE_STEM_FIELDS = (
    'stem_temporal_kernel',
    'stem_temporal_stride',
    'stem_max_pool',
    'max_pool_gradient',
)
# The modules the reference's fine-tuning trains (`--ft_begin_index 4`): the last stage and the
# head. An entry names a top-level module, or with '_' after it the blocks `<entry>_<i>`.
_LAST_RESIDUAL_STAGE_AND_HEAD = ('layer4', 'fc')


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What the shared machinery needs to know about a family."""

    arch: str  # config.model.arch
    title: str  # For messages and tables, e.g. 'ResNeXt'.
    module: Callable[..., layers.VideoClassifier]
    depths: tuple[int, ...]
    fields: tuple[str, ...]  # config.model fields it reads besides the shared ones.
    last_stage_and_head: tuple[str, ...]
    # (Flax module path, arch) -> PyTorch module name (the released checkpoints' spelling).
    torch_module_name: Callable[[tuple[str, ...], str], str]
    # A PyTorch state_dict key in another accepted spelling -> the released spelling.
    torch_key_alias: Callable[[str], str] | None = None
    # Whose state_dict names it uses: 'reference' (Hara et al.'s code) or 'torchvision'.
    torch_layout: str = 'reference'
    # The `arch` entry of a PyTorch checkpoint file: 'resnext-101' (reference) or 'r3d_18'.
    checkpoint_arch_format: str = '{arch}-{depth}'
    # The model's name in messages and tables: 'ResNeXt-101', 'torchvision r3d_18'.
    name_format: str = '{title}-{depth}'
    # The shortest clip and smallest crop the layout runs on with its default stem.
    smallest_clip: tuple[int, int] = (8, 16)

    def name(self, depth: int) -> str:
        return self.name_format.format(title=self.title, depth=depth)

    def checkpoint_arch(self, depth: int) -> str:
        return self.checkpoint_arch_format.format(arch=self.arch, depth=depth)


def _torchvision(variant: str) -> Architecture:
    return Architecture(
        arch=variant,
        title=f'torchvision {variant}',
        module=functools.partial(torchvision_video.VideoResNet3D, variant=variant),
        depths=tuple(torchvision_video.ARCHITECTURES),
        fields=_RESIDUAL_FIELDS,
        last_stage_and_head=_LAST_RESIDUAL_STAGE_AND_HEAD,
        torch_module_name=torchvision_video.torch_module_name,
        torch_layout='torchvision',
        checkpoint_arch_format='{arch}_{depth}',
        name_format='{title}_{depth}',
    )


ARCHITECTURES: dict[str, Architecture] = {
    family.arch: family
    for family in (
        Architecture(
            arch='resnet',
            title='ResNet',
            module=resnet.ResNet3D,
            depths=tuple(resnet.ARCHITECTURES),
            fields=_RESIDUAL_FIELDS + _REFERENCE_STEM_FIELDS,
            last_stage_and_head=_LAST_RESIDUAL_STAGE_AND_HEAD,
            torch_module_name=resnet.torch_module_name,
        ),
        Architecture(
            arch='preresnet',
            title='pre-activation ResNet',
            module=pre_act_resnet.PreActivationResNet3D,
            depths=tuple(pre_act_resnet.ARCHITECTURES),
            fields=_RESIDUAL_FIELDS + _REFERENCE_STEM_FIELDS,
            last_stage_and_head=_LAST_RESIDUAL_STAGE_AND_HEAD,
            torch_module_name=resnet.torch_module_name,
        ),
        Architecture(
            arch='wideresnet',
            title='Wide ResNet',
            module=wide_resnet.WideResNet3D,
            depths=tuple(wide_resnet.ARCHITECTURES),
            fields=(*_RESIDUAL_FIELDS, 'widen_factor', *_REFERENCE_STEM_FIELDS),
            last_stage_and_head=_LAST_RESIDUAL_STAGE_AND_HEAD,
            torch_module_name=resnet.torch_module_name,
        ),
        Architecture(
            arch='resnext',
            title='ResNeXt',
            module=resnext.ResNeXt3D,
            depths=tuple(resnext.ARCHITECTURES),
            fields=(*_RESIDUAL_FIELDS, 'cardinality', *_REFERENCE_STEM_FIELDS),
            last_stage_and_head=_LAST_RESIDUAL_STAGE_AND_HEAD,
            torch_module_name=resnet.torch_module_name,
        ),
        Architecture(
            arch='densenet',
            title='DenseNet',
            module=densenet.DenseNet3D,
            depths=tuple(densenet.ARCHITECTURES),
            fields=('depth', 'growth_rate', 'bn_size', *_REFERENCE_STEM_FIELDS),
            # The reference's densenet fine-tuning: the last dense block, norm5, classifier.
            last_stage_and_head=('denseblock4', 'norm5', 'classifier'),
            torch_module_name=densenet.torch_module_name,
            torch_key_alias=densenet.released_torch_key,
            smallest_clip=(16, 32),
        ),
        _torchvision('r3d'),
        _torchvision('mc3'),
        _torchvision('r2plus1d'),
    )
}
# The config.model fields every family reads.
_SHARED_FIELDS = (
    'num_classes', 'stem_conv', 'conv_formulation', 'bn_momentum', 'bn_epsilon', 'bn_fast_variance'
)


def valid_models() -> str:
    """Every valid (arch, depth) pair, for messages: 'resnet-10/18/..., preresnet-18/...'."""
    return ', '.join(
        f'{family.arch}-{"/".join(str(d) for d in family.depths)}'
        for family in ARCHITECTURES.values()
    )


def architecture(model_config: Any) -> Architecture:
    """The family of `config.model`, checked with its depth."""
    family = ARCHITECTURES.get(model_config.arch)
    if family is None:
        raise ConfigError(
            f'config.model.arch={model_config.arch!r} is not one of {tuple(ARCHITECTURES)}; '
            f'the models are {valid_models()}.'
        )
    if model_config.depth not in family.depths:
        raise ConfigError(
            f'config.model.depth={model_config.depth!r} is not one of {family.depths} for '
            f'config.model.arch={family.arch!r}; the models are {valid_models()}.'
        )
    return family


def create_model(config: Any, bn_axis_name: str | None = None) -> layers.VideoClassifier:
    """Builds the model of `config.model`, normalising inputs as `config.input` says.

    `bn_axis_name` is the pmap axis over which BatchNorm averages batch statistics; it is used
    only when `config.model.sync_batch_norm` is set.
    """
    model_config = config.model
    family = architecture(model_config)
    if model_config.dtype not in layers.DTYPES:
        raise ConfigError(
            f'config.model.dtype={model_config.dtype!r} is not one of {layers.DTYPES}.'
        )
    # Sequences as tuples: a module must be hashable (jit caches on it), and a config read back
    # from a checkpoint's JSON metadata holds lists.
    fields = {
        field: tuple(value) if isinstance(value, list | tuple) else value
        for field in (*_SHARED_FIELDS, *family.fields)
        for value in (model_config[field],)
    }
    return family.module(
        **fields,
        dtype=jnp.dtype(model_config.dtype),
        bn_axis_name=bn_axis_name if model_config.sync_batch_norm else None,
        value_scale=float(config.input.value_scale),
        mean=tuple(float(m) for m in config.input.mean),
        std=tuple(float(s) for s in config.input.std),
    )


def init_variables(
    model: layers.VideoClassifier, rng: jax.Array, clip_shape: Sequence[int]
) -> dict[str, Any]:
    """Fresh {'params', 'batch_stats'} for clips of `clip_shape` [N, T, H, W, 3]."""
    clips = jnp.zeros(tuple(clip_shape), jnp.uint8)
    variables = jax.jit(functools.partial(model.init, train=False))(rng, clips)
    return {'params': variables['params'], 'batch_stats': variables['batch_stats']}


def expected_variables(model: layers.VideoClassifier, clip_shape: Sequence[int]) -> Any:
    """Shapes and dtypes of the model's variables, without computing them."""
    return jax.eval_shape(lambda: init_variables(model, jax.random.key(0), tuple(clip_shape)))


def upgrade_model_config(model: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's `model` metadata in today's schema.

    Checkpoints written before `arch` existed hold the reference ResNet, or, with
    `stem='torchvision'`, torchvision's r3d layout (whose parameter names they share); fields
    added since then take their defaults.
    """
    upgraded = dict(model)
    if 'arch' not in upgraded:
        stem = upgraded.pop('stem', 'reference')
        upgraded['arch'] = 'r3d' if stem == 'torchvision' else 'resnet'
    return {**defaults.get_config().model.to_dict(), **upgraded}
