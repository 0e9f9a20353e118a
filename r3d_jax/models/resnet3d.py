"""3D ResNets in the layout of Hara et al. (CVPR 2018), plus the torchvision r3d_18 stem.

Clips are [N, T, H, W, 3] (uint8 or float); the model normalises them on the device as
`(x * value_scale - mean) / std` and returns float32 logits [N, num_classes]. Parameters are
always float32; `dtype` is the computation dtype of the convolutions and BatchNorm outputs,
while BatchNorm statistics are reduced in float32 (Flax's `force_float32_reductions`).

Parameter names follow the PyTorch reference so that the importer is a plain renaming:
`conv1`, `bn1`, `layer{1..4}_{i}` blocks with `conv1`/`bn1`, `conv2`/`bn2` (`conv3`/`bn3` in
bottlenecks) and `downsample` (`conv` + `bn`, shortcut B only), and the classifier `fc`.
The stem conv keeps one stored kernel [kt, 7, 7, 3, 64] whether it is computed directly or,
faster on GPUs, on space-to-depth blocks (`stem_conv`).

One known difference from PyTorch: BatchNorm running variances are updated with the biased
batch variance (Flax) where PyTorch uses the unbiased one; outputs and gradients are the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from r3d_jax.models.max_pool import max_pool_3d

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
STEMS = ('reference', 'torchvision')
# How the stem conv is computed; all give the same values from the same stored kernel.
STEM_CONVS = ('direct', 'space_to_depth')
# How the max pool's gradient is computed; both route it to the same entries.
MAX_POOL_GRADIENTS = ('saved_indices', 'select_and_scatter')
SHORTCUTS = ('A', 'B')
# float64 serves numerical checks and needs `jax.enable_x64`.
DTYPES = ('float32', 'bfloat16', 'float16', 'float64')
# The stem conv's spatial geometry is fixed in both stems: kernel 7, stride 2, padding 3.
STEM_WIDTH = 64
STEM_SPATIAL_KERNEL = 7
_CONV_DIMENSIONS = ('NDHWC', 'DHWIO', 'NDHWC')

ModuleDef = Callable[..., nn.Module]

# Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * kernel volume)).
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _symmetric_uniform(bound: float) -> Callable[..., jax.Array]:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def classifier_head(num_classes: int, in_features: int, name: str | None = None) -> nn.Dense:
    """The float32 classifier, initialised like PyTorch's nn.Linear: U(+-1/sqrt(in_features))."""
    bound = 1.0 / np.sqrt(in_features)
    return nn.Dense(
        num_classes,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        kernel_init=_symmetric_uniform(bound),
        bias_init=_symmetric_uniform(bound),
        name=name,
    )


def stem_geometry(
    stem: str, temporal_kernel: int, temporal_stride: int, max_pool: bool
) -> tuple[int, int, bool]:
    """(temporal kernel, temporal stride, max-pool) of a stem; 'torchvision' is fixed."""
    if stem == 'torchvision':
        return 3, 1, False
    return temporal_kernel, temporal_stride, max_pool


def stem_conv_direct(x: jax.Array, kernel: jax.Array, temporal_stride: int) -> jax.Array:
    """The stem conv as written: kernel [kt, 7, 7, C, O], stride (st, 2, 2), pad (kt//2, 3, 3)."""
    temporal_padding = kernel.shape[0] // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(temporal_stride, 2, 2),
        padding=((temporal_padding, temporal_padding), (3, 3), (3, 3)),
        dimension_numbers=_CONV_DIMENSIONS,
    )


def stem_conv_space_to_depth(x: jax.Array, kernel: jax.Array, temporal_stride: int) -> jax.Array:
    """The same conv as `stem_conv_direct`, computed on 2x2 spatial blocks.

    A 7-tap stride-2 conv equals a 4-tap stride-1 conv over pairs of pixels once the kernel is
    padded to 8 taps with a zero: x [N,T,H,W,C] becomes [N,T,H'/2,W'/2,4C] and the kernel
    [kt,7,7,C,O] becomes [kt,4,4,4C,O]. GPUs run this far faster than the 3-channel stride-2
    conv. It applies to every input size: an odd H or W gets one more zero row (column) of
    padding, which only ever meets the kernel's zero tap, so the values are exactly the direct
    conv's, and gradients flow to the stored 7x7 kernel.
    """
    n, t, h, w, c = x.shape
    kt, kh, kw, kc, out_features = kernel.shape
    if (kh, kw) != (STEM_SPATIAL_KERNEL, STEM_SPATIAL_KERNEL) or kc != c:
        raise ValueError(
            f'stem kernel {kernel.shape} does not fit [kt, 7, 7, {c}, O] for input {x.shape}.'
        )
    x = jnp.pad(x, ((0, 0), (0, 0), (3, 3 + h % 2), (3, 3 + w % 2), (0, 0)))
    blocks_h, blocks_w = x.shape[2] // 2, x.shape[3] // 2
    x = x.reshape(n, t, blocks_h, 2, blocks_w, 2, c)
    x = x.transpose(0, 1, 2, 4, 3, 5, 6).reshape(n, t, blocks_h, blocks_w, 4 * c)
    kernel = jnp.pad(kernel, ((0, 0), (0, 1), (0, 1), (0, 0), (0, 0)))
    kernel = kernel.reshape(kt, 4, 2, 4, 2, c, out_features)
    kernel = kernel.transpose(0, 1, 3, 2, 4, 5, 6).reshape(kt, 4, 4, 4 * c, out_features)
    temporal_padding = kt // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(temporal_stride, 1, 1),
        padding=((temporal_padding, temporal_padding), (0, 0), (0, 0)),
        dimension_numbers=_CONV_DIMENSIONS,
    )


STEM_CONV_FUNCTIONS: dict[str, Callable[[jax.Array, jax.Array, int], jax.Array]] = {
    'direct': stem_conv_direct,
    'space_to_depth': stem_conv_space_to_depth,
}


class StemConv(nn.Module):
    """The stem's 3-channel conv with one stored kernel [kt, 7, 7, C, features]."""

    features: int
    temporal_kernel: int
    temporal_stride: int
    method: str  # One of STEM_CONVS.
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_shape = (
            self.temporal_kernel,
            STEM_SPATIAL_KERNEL,
            STEM_SPATIAL_KERNEL,
            x.shape[-1],
            self.features,
        )
        kernel = self.param('kernel', conv_kernel_init, kernel_shape, jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        return STEM_CONV_FUNCTIONS[self.method](x, kernel, self.temporal_stride)


class Shortcut(nn.Module):
    """Brings a block's input to the residual branch's shape when stride or width change.

    'A' subsamples by the stride (a 1x1x1 average pool) and zero-pads the new channels; with
    `stop_gradient` no gradient flows through it, as in the reference, which rebuilds the
    padded tensor from `.data`. 'B' is a strided 1x1x1 conv followed by BatchNorm.
    """

    features: int
    stride: int
    kind: str
    stop_gradient: bool
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == 'B':
            x = self.conv(self.features, (1, 1, 1), strides=(self.stride,) * 3, name='conv')(x)
            return self.norm(name='bn')(x)
        s = self.stride
        x = x[:, ::s, ::s, ::s, :]
        x = jnp.pad(x, ((0, 0),) * 4 + ((0, self.features - x.shape[-1]),))
        return lax.stop_gradient(x) if self.stop_gradient else x


class _ResidualBlock(nn.Module):
    """What basic and bottleneck blocks share: the shortcut and the checked residual sum."""

    features: int
    stride: int
    shortcut: str
    shortcut_a_stop_gradient: bool
    conv: ModuleDef
    norm: ModuleDef
    expansion: ClassVar[int] = 1

    def add_shortcut(self, x: jax.Array, branch: jax.Array) -> jax.Array:
        out_features = self.features * self.expansion
        residual = x
        if self.stride != 1 or x.shape[-1] != out_features:
            residual = Shortcut(
                out_features,
                self.stride,
                self.shortcut,
                self.shortcut_a_stop_gradient,
                self.conv,
                self.norm,
                name='downsample',
            )(x)
        if residual.shape != branch.shape:
            raise ValueError(
                f'{self.name}: shortcut shape {residual.shape} differs from the residual '
                f'branch {branch.shape} (input {x.shape}, stride {self.stride}).'
            )
        return nn.relu(branch + residual)


class BasicBlock(_ResidualBlock):
    """conv3x3x3 (stride) -> BN -> ReLU -> conv3x3x3 -> BN, plus shortcut, ReLU."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(self.features, (3, 3, 3), (self.stride,) * 3, ((1, 1),) * 3, name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.conv(self.features, (3, 3, 3), (1, 1, 1), ((1, 1),) * 3, name='conv2')(y)
        y = self.norm(name='bn2')(y)
        return self.add_shortcut(x, y)


class Bottleneck(_ResidualBlock):
    """conv1x1x1 -> conv3x3x3 (stride) -> conv1x1x1 (x4 width), each with BN, plus shortcut."""

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(self.features, (1, 1, 1), name='conv1')(x)
        y = nn.relu(self.norm(name='bn1')(y))
        y = self.conv(self.features, (3, 3, 3), (self.stride,) * 3, ((1, 1),) * 3, name='conv2')(y)
        y = nn.relu(self.norm(name='bn2')(y))
        y = self.conv(self.features * self.expansion, (1, 1, 1), name='conv3')(y)
        y = self.norm(name='bn3')(y)
        return self.add_shortcut(x, y)


BLOCKS: dict[str, type[_ResidualBlock]] = {'basic': BasicBlock, 'bottleneck': Bottleneck}


class ResNet3D(nn.Module):
    """3D ResNet classifier of clips [N, T, H, W, 3] -> float32 logits [N, num_classes].

    Fields carry the names of `config.model` (see configs/default.py) and of the normalisation
    fields of `config.input`; `create_model` builds it from a config.
    """

    depth: int = 18
    num_classes: int = 101
    shortcut: str = 'B'
    shortcut_a_stop_gradient: bool = True
    stem_temporal_kernel: int = 7
    stem_temporal_stride: int = 1
    stem_max_pool: bool = True
    stem_conv: str = 'space_to_depth'
    max_pool_gradient: str = 'saved_indices'
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_fast_variance: bool = False
    bn_axis_name: str | None = None
    value_scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        _check_model_fields(self)
        super().__post_init__()

    def normalise(self, clips: jax.Array) -> jax.Array:
        """(x * value_scale - mean) / std in float32 (or wider), cast to the computation dtype."""
        precision = jnp.promote_types(self.dtype, jnp.float32)
        x = clips.astype(precision) * self.value_scale
        x = (x - jnp.asarray(self.mean, precision)) / jnp.asarray(self.std, precision)
        return x.astype(self.dtype)

    @nn.compact
    def __call__(self, clips: jax.Array, *, train: bool) -> jax.Array:
        _check_clips(clips)
        conv = functools.partial(
            nn.Conv,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=conv_kernel_init,
        )
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.bn_axis_name,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            use_fast_variance=self.bn_fast_variance,
        )
        x = self.normalise(clips)
        x = StemConv(
            STEM_WIDTH,
            self.stem_temporal_kernel,
            self.stem_temporal_stride,
            self.stem_conv,
            self.dtype,
            name='conv1',
        )(x)
        x = nn.relu(norm(name='bn1')(x))
        if self.stem_max_pool:
            if self.max_pool_gradient == 'saved_indices':
                x = max_pool_3d(x, (3, 3, 3), (2, 2, 2), (1, 1, 1))
            else:
                x = nn.max_pool(x, (3, 3, 3), strides=(2, 2, 2), padding=((1, 1),) * 3)

        kind, blocks_per_stage = ARCHITECTURES[self.depth]
        block = BLOCKS[kind]
        stages = zip(STAGE_WIDTHS, blocks_per_stage, strict=True)
        for stage, (width, num_blocks) in enumerate(stages):
            for index in range(num_blocks):
                x = block(
                    width,
                    stride=2 if stage > 0 and index == 0 else 1,
                    shortcut=self.shortcut,
                    shortcut_a_stop_gradient=self.shortcut_a_stop_gradient,
                    conv=conv,
                    norm=norm,
                    name=f'layer{stage + 1}_{index}',
                )(x)

        # Global mean over T, H, W: no pooling size is derived from the input size.
        features = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
        return classifier_head(self.num_classes, features.shape[-1], name='fc')(features)


def _check_model_fields(model: ResNet3D) -> None:
    """Rejects unknown options early, naming the config field to fix."""
    choices = {
        'depth': tuple(ARCHITECTURES),
        'shortcut': SHORTCUTS,
        'stem_conv': STEM_CONVS,
        'max_pool_gradient': MAX_POOL_GRADIENTS,
    }
    for field, allowed in choices.items():
        value = getattr(model, field)
        if value not in allowed:
            raise ValueError(f'config.model.{field}={value!r} is not one of {allowed}.')
    if jnp.dtype(model.dtype).name not in DTYPES:
        raise ValueError(f'config.model.dtype={model.dtype!r} is not one of {DTYPES}.')
    for field in ('num_classes', 'stem_temporal_kernel', 'stem_temporal_stride'):
        value = getattr(model, field)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'config.model.{field}={value!r} must be a positive integer.')
    for field in ('mean', 'std'):
        value = getattr(model, field)
        if len(value) != 3:
            raise ValueError(f'config.input.{field}={value!r} must hold 3 values (R, G, B).')
    if any(s == 0 for s in model.std):
        raise ValueError(f'config.input.std={model.std!r} must not contain 0.')


def _check_clips(clips: jax.Array) -> None:
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f'ResNet3D expects clips [N, T, H, W, 3]; got shape {clips.shape}.')
    if not (clips.dtype == jnp.uint8 or jnp.issubdtype(clips.dtype, jnp.floating)):
        raise ValueError(f'ResNet3D expects uint8 or float clips; got {clips.dtype}.')


def create_model(config: Any, bn_axis_name: str | None = None) -> ResNet3D:
    """Builds the model of `config.model`, normalising inputs as `config.input` says.

    `bn_axis_name` is the pmap axis over which BatchNorm averages batch statistics; it is used
    only when `config.model.sync_batch_norm` is set.
    """
    model_config = config.model
    if model_config.stem not in STEMS:
        raise ValueError(f'config.model.stem={model_config.stem!r} is not one of {STEMS}.')
    if model_config.dtype not in DTYPES:
        raise ValueError(f'config.model.dtype={model_config.dtype!r} is not one of {DTYPES}.')
    temporal_kernel, temporal_stride, max_pool = stem_geometry(
        model_config.stem,
        model_config.stem_temporal_kernel,
        model_config.stem_temporal_stride,
        model_config.stem_max_pool,
    )
    return ResNet3D(
        depth=model_config.depth,
        num_classes=model_config.num_classes,
        shortcut=model_config.shortcut,
        shortcut_a_stop_gradient=model_config.shortcut_a_stop_gradient,
        stem_temporal_kernel=temporal_kernel,
        stem_temporal_stride=temporal_stride,
        stem_max_pool=max_pool,
        stem_conv=model_config.stem_conv,
        max_pool_gradient=model_config.max_pool_gradient,
        dtype=jnp.dtype(model_config.dtype),
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        bn_fast_variance=model_config.bn_fast_variance,
        bn_axis_name=bn_axis_name if model_config.sync_batch_norm else None,
        value_scale=float(config.input.value_scale),
        mean=tuple(float(m) for m in config.input.mean),
        std=tuple(float(s) for s in config.input.std),
    )


def init_variables(model: ResNet3D, rng: jax.Array, clip_shape: Sequence[int]) -> dict[str, Any]:
    """Fresh {'params', 'batch_stats'} for clips of `clip_shape` [N, T, H, W, 3]."""
    clips = jnp.zeros(tuple(clip_shape), jnp.uint8)
    variables = jax.jit(functools.partial(model.init, train=False))(rng, clips)
    return {'params': variables['params'], 'batch_stats': variables['batch_stats']}
