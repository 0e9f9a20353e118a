"""What the model families share: the conv factory, the stems, shortcuts, head and normalisation.

Every family is a `VideoClassifier`: clips [N, T, H, W, 3] (uint8 or float) are normalised on
the device as `(x * value_scale - mean) / std` and mapped to float32 logits [N, num_classes].
Parameters are always float32; `dtype` is the computation dtype of the convolutions and
BatchNorm outputs, while BatchNorm statistics are reduced in float32 (Flax's
`force_float32_reductions`).

Every convolution of every family is built by one `ConvFactory` (`VideoClassifier.conv_factory`,
one per stage), so how a convolution is computed is chosen there without touching the families.
A convolution keeps one stored kernel [kt, kh, kw, in / groups, out] however it is computed: the
stem's 3-channel conv directly or on space-to-depth blocks (`stem_conv`), each stage's others
natively or as exactly equal 2D convs (`conv_formulation`; `conv_formulations.py`).

One known difference from PyTorch: BatchNorm running variances are updated with the biased
batch variance (Flax) where PyTorch uses the unbiased one; outputs and gradients are the same.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from r3d_jax.defaults import ConfigError
from r3d_jax.models.conv_formulations import (
    CHANNELS_LAST_3D,
    CONV_FORMULATIONS,
    STEM_CONV_FORMULATIONS,
    STEM_SPATIAL_KERNEL,
)
from r3d_jax.models.max_pool import max_pool_3d

Triple = tuple[int, int, int]
ModuleDef = Callable[..., nn.Module]

# How the stem conv is computed; all give the same values from the same stored kernel.
STEM_CONVS = tuple(STEM_CONV_FORMULATIONS)
# How each stage's other convolutions are computed, likewise (`config.model.conv_formulation`).
CONV_FORMULATION_CHOICES = tuple(CONV_FORMULATIONS)
NUM_STAGES = 4  # Stages 1-4 of every layout; stage 0 is the stem.
# How the max pool's gradient is computed; both route it to the same entries.
MAX_POOL_GRADIENTS = ('saved_indices', 'select_and_scatter')
SHORTCUTS = ('A', 'B')
# float64 serves numerical checks and needs `jax.enable_x64`.
DTYPES = ('float32', 'bfloat16', 'float16', 'float64')
# Every stem's first conv has the same spatial geometry: kernel 7, stride 2, padding 3.
STEM_WIDTH = 64

# Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * kernel volume)).
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def triple(value: int | Sequence[int]) -> Triple:
    """(v, v, v) for an int, the triple itself otherwise."""
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (t, h, w)


# ---------------------------------------------------------------------------------------------
# Convolutions: one stored kernel each, built by one factory.


class Conv(nn.Module):
    """A bias-free 3D convolution with one stored kernel [kt, kh, kw, in / groups, features]."""

    features: int
    kernel_size: Triple
    strides: Triple
    padding: Triple  # Symmetric zero padding per axis.
    groups: int
    dtype: Any
    formulation: str = 'native'  # One of CONV_FORMULATION_CHOICES.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        if in_features % self.groups:
            raise ValueError(
                f'{self.name}: {in_features} input channels do not split into '
                f'{self.groups} groups.'
            )
        kernel_shape = (*self.kernel_size, in_features // self.groups, self.features)
        kernel = self.param('kernel', conv_kernel_init, kernel_shape, jnp.float32)
        return CONV_FORMULATIONS[self.formulation](
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=self.strides,
            padding=tuple((p, p) for p in self.padding),
            dimension_numbers=CHANNELS_LAST_3D,
            feature_group_count=self.groups,
        )


class StemConv(nn.Module):
    """A stem's 3-channel conv with one stored kernel [kt, 7, 7, C, features]."""

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
        return STEM_CONV_FORMULATIONS[self.method](x, kernel, self.temporal_stride)


@dataclasses.dataclass(frozen=True)
class ConvFactory:
    """Builds the convolutions of one stage of a model (stage 0: the stem).

    Families never build a convolution themselves: they ask their stage's factory, so that the
    way a convolution is computed is decided here, from the model's options.
    """

    dtype: Any
    stem_method: str  # One of STEM_CONVS.
    formulation: str = 'native'  # One of CONV_FORMULATION_CHOICES, for all but the stem conv.

    def __call__(
        self,
        features: int,
        kernel_size: int | Triple,
        strides: int | Triple = 1,
        padding: int | Triple = 0,
        *,
        groups: int = 1,
        name: str,
    ) -> Conv:
        return Conv(
            features,
            triple(kernel_size),
            triple(strides),
            triple(padding),
            groups,
            self.dtype,
            self.formulation,
            name=name,
        )

    def stem(
        self, features: int, temporal_kernel: int, temporal_stride: int, *, name: str
    ) -> StemConv:
        """The 7x7 (spatial) stride-2 conv on RGB that every stem starts with."""
        return StemConv(
            features, temporal_kernel, temporal_stride, self.stem_method, self.dtype, name=name
        )


# ---------------------------------------------------------------------------------------------
# Residual shortcuts.


class Shortcut(nn.Module):
    """Brings a block's input to the residual branch's shape when stride or width change.

    'A' subsamples by the strides (a 1x1x1 average pool) and zero-pads the new channels; with
    `stop_gradient` no gradient flows through it, as in the reference, which rebuilds the
    padded tensor from `.data`. 'B' is a strided 1x1x1 conv followed by BatchNorm.
    """

    features: int
    strides: Triple
    kind: str
    stop_gradient: bool
    convs: ConvFactory | None  # Used by 'B' only.
    norm: ModuleDef | None  # Used by 'B' only.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == 'B':
            assert self.convs is not None and self.norm is not None
            x = self.convs(self.features, 1, self.strides, name='conv')(x)
            return self.norm(name='bn')(x)
        st, sh, sw = self.strides
        x = x[:, ::st, ::sh, ::sw, :]
        x = jnp.pad(x, ((0, 0),) * 4 + ((0, self.features - x.shape[-1]),))
        return lax.stop_gradient(x) if self.stop_gradient else x


class ResidualBlock(nn.Module):
    """What residual blocks share: the shortcut of the block's raw input and the checked sum."""

    out_features: int
    strides: Triple
    shortcut: str
    shortcut_a_stop_gradient: bool
    convs: ConvFactory
    norm: ModuleDef

    def add_shortcut(self, x: jax.Array, branch: jax.Array) -> jax.Array:
        """branch + x, through a `downsample` shortcut where the shapes differ."""
        residual = x
        if self.strides != (1, 1, 1) or x.shape[-1] != self.out_features:
            residual = Shortcut(
                self.out_features,
                self.strides,
                self.shortcut,
                self.shortcut_a_stop_gradient,
                self.convs,
                self.norm,
                name='downsample',
            )(x)
        if residual.shape != branch.shape:
            raise ValueError(
                f'{self.name}: shortcut shape {residual.shape} differs from the residual '
                f'branch {branch.shape} (input {x.shape}, strides {self.strides}).'
            )
        return branch + residual


# ---------------------------------------------------------------------------------------------
# The classifier head.


def _symmetric_uniform(bound: float) -> Callable[..., jax.Array]:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# How a family initialises its classifier: PyTorch's nn.Linear default, U(+-1/sqrt(in)) for
# weight and bias (the reference), or N(0, 0.01) and zero bias (torchvision's video models).
HEAD_INITS = ('pytorch_linear', 'normal_0.01')


def classifier_head(
    num_classes: int,
    in_features: int,
    init: str = 'pytorch_linear',
    name: str | None = None,
    dtype: Any = jnp.float32,
) -> nn.Dense:
    """The classifier (float32 parameters, `dtype` computation), initialised as `init` says
    (one of HEAD_INITS)."""
    if init not in HEAD_INITS:
        raise ValueError(f'Classifier init {init!r} is not one of {HEAD_INITS}.')
    if init == 'pytorch_linear':
        bound = 1.0 / np.sqrt(in_features)
        kernel_init, bias_init = _symmetric_uniform(bound), _symmetric_uniform(bound)
    else:
        kernel_init, bias_init = nn.initializers.normal(0.01), nn.initializers.zeros
    return nn.Dense(
        num_classes,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init,
        name=name,
    )


# ---------------------------------------------------------------------------------------------
# The base of every family.


class VideoClassifier(nn.Module):
    """Options every family shares; subclasses add their layout's fields and `__call__`.

    Field names are those of `config.model` (r3d_jax/defaults.py) and of the normalisation
    fields of `config.input`; `r3d_jax.models.create_model` builds a family from a config.
    """

    num_classes: int = 101
    stem_conv: str = 'space_to_depth'
    conv_formulation: tuple[str, ...] = ('native',) * NUM_STAGES  # Stages 1-4.
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_fast_variance: bool = False
    bn_axis_name: str | None = None
    value_scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    # The classifier's name and initialisation (one of HEAD_INITS).
    head_name: ClassVar[str] = 'fc'
    head_init: ClassVar[str] = 'pytorch_linear'

    def __post_init__(self) -> None:
        self.check_fields()
        super().__post_init__()

    def check_fields(self) -> None:
        """Rejects unknown options early, naming the config field to fix."""
        check_choices(self, {'stem_conv': STEM_CONVS})
        formulations = tuple(self.conv_formulation)
        if len(formulations) != NUM_STAGES or not set(formulations) <= set(CONV_FORMULATIONS):
            raise ConfigError(
                f'config.model.conv_formulation={self.conv_formulation!r} must name one of '
                f'{CONV_FORMULATION_CHOICES} for each of the {NUM_STAGES} stages.'
            )
        if jnp.dtype(self.dtype).name not in DTYPES:
            raise ConfigError(f'config.model.dtype={self.dtype!r} is not one of {DTYPES}.')
        check_positive_integers(self, ('num_classes',))
        for field in ('mean', 'std'):
            value = getattr(self, field)
            if len(value) != 3:
                raise ConfigError(
                    f'config.input.{field}={value!r} must hold 3 values (R, G, B).'
                )
        if any(s == 0 for s in self.std):
            raise ConfigError(f'config.input.std={self.std!r} must not contain 0.')

    def normalise(self, clips: jax.Array) -> jax.Array:
        """(x * value_scale - mean) / std in float32 (or wider), cast to the computation dtype."""
        check_clips(clips)
        precision = jnp.promote_types(self.dtype, jnp.float32)
        x = clips.astype(precision) * self.value_scale
        x = (x - jnp.asarray(self.mean, precision)) / jnp.asarray(self.std, precision)
        return x.astype(self.dtype)

    def conv_factory(self, stage: int) -> ConvFactory:
        """The convolutions of `stage` (0: the stem; 1-4: the four stages of the layouts).

        The stem conv is computed as `stem_conv` says, a stage's convolutions as its entry of
        `conv_formulation` says; any other convolution of the stem natively.
        """
        formulation = self.conv_formulation[stage - 1] if stage > 0 else 'native'
        return ConvFactory(self.dtype, self.stem_conv, formulation)

    def batch_norm(self, train: bool) -> ModuleDef:
        """BatchNorm with the model's options; batch statistics in training mode."""
        return functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.bn_axis_name,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            use_fast_variance=self.bn_fast_variance,
        )

    def classify(self, x: jax.Array) -> jax.Array:
        """Global mean over T, H, W, then the classifier, in float32 (float64 for float64 models).

        No pooling size is derived from the input size: the reference's average pools cover
        the whole last feature map for the clip sizes it trains on, and so does this mean.
        """
        precision = jnp.promote_types(self.dtype, jnp.float32)
        features = jnp.mean(x.astype(precision), axis=(1, 2, 3))
        head = classifier_head(
            self.num_classes, features.shape[-1], self.head_init, self.head_name, precision
        )
        return head(features)


class ReferenceStemClassifier(VideoClassifier):
    """A family with the reference's stem: conv 7x7x7 (stride (1, 2, 2)), BN, ReLU, max pool.

    The stem's temporal kernel and stride and its max pool are options (the reference uses a
    temporal stride of 2 for clips of 32 frames or more).
    """

    stem_temporal_kernel: int = 7
    stem_temporal_stride: int = 1
    stem_max_pool: bool = True
    max_pool_gradient: str = 'saved_indices'

    def check_fields(self) -> None:
        super().check_fields()
        check_choices(self, {'max_pool_gradient': MAX_POOL_GRADIENTS})
        check_positive_integers(self, ('stem_temporal_kernel', 'stem_temporal_stride'))

    def reference_stem(
        self, x: jax.Array, norm: ModuleDef, conv_name: str = 'conv1', norm_name: str = 'bn1'
    ) -> jax.Array:
        convs = self.conv_factory(0)
        x = convs.stem(
            STEM_WIDTH, self.stem_temporal_kernel, self.stem_temporal_stride, name=conv_name
        )(x)
        x = nn.relu(norm(name=norm_name)(x))
        if not self.stem_max_pool:
            return x
        if self.max_pool_gradient == 'saved_indices':
            return max_pool_3d(x, (3, 3, 3), (2, 2, 2), (1, 1, 1))
        return nn.max_pool(x, (3, 3, 3), strides=(2, 2, 2), padding=((1, 1),) * 3)


# ---------------------------------------------------------------------------------------------
# Checks with messages that name the config field.


def check_choices(model: nn.Module, choices: dict[str, Sequence[Any]]) -> None:
    for field, allowed in choices.items():
        value = getattr(model, field)
        if value not in allowed:
            raise ConfigError(f'config.model.{field}={value!r} is not one of {tuple(allowed)}.')


def check_positive_integers(model: nn.Module, fields: Sequence[str]) -> None:
    for field in fields:
        value = getattr(model, field)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f'config.model.{field}={value!r} must be a positive integer.')


def check_clips(clips: jax.Array) -> None:
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f'The model expects clips [N, T, H, W, 3]; got shape {clips.shape}.')
    if not (clips.dtype == jnp.uint8 or jnp.issubdtype(clips.dtype, jnp.floating)):
        raise ValueError(f'The model expects uint8 or float clips; got {clips.dtype}.')
