"""The per-device train and evaluation steps, written once with named-axis collectives.

Both run under `jax.pmap` over the local devices with the state replicated (in_axes/out_axes
None) and the batch split along its leading [devices] axis. This module needs only JAX, Flax
and optax, so benchmarks can run the exact steps `train.py` and `eval.py` run on machines
without TensorFlow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r3d_jax import optimizers
from r3d_jax.crop_resize import CropResize, crop_sides, max_crop_side

AXIS = 'batch'  # The pmap axis: collectives and synchronised BatchNorm reduce over it.


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over the batch, in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels
    ).mean()


def all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@flax.struct.dataclass
class TrainState:
    """What one train step reads and writes; identical on every device."""

    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict[str, Any]:
        return {'params': self.params, 'batch_stats': self.batch_stats}


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    crop_resize: CropResize,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on this device's share of the global batch, inside `pmap` over AXIS.

    The batch holds the input pipeline's training crops (`crops`, `crop_sizes`, `flips`),
    resized and flipped here by `crop_resize`, and `labels`. Gradients and metrics are averaged
    over all devices, so every device applies the same update and the state stays replicated.
    With synchronised BatchNorm the batch statistics already agree; otherwise each device's
    running averages are averaged as well.
    """

    clips = crop_resize(batch['crops'], batch['crop_sizes'], batch['flips'])

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        logits, updated = model.apply(
            {'params': params, 'batch_stats': state.batch_stats},
            clips,
            train=True,
            mutable=['batch_stats'],
        )
        return cross_entropy_loss(logits, batch['labels']), (logits, updated['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    grads = lax.pmean(grads, AXIS)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if model.bn_axis_name is None:
        batch_stats = lax.pmean(batch_stats, AXIS)
    metrics = lax.pmean(
        {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['labels'])}, AXIS
    )
    metrics['learning_rate'] = optimizers.get_learning_rate(opt_state)
    metrics['finite'] = all_finite((metrics['loss'], params, batch_stats))
    return TrainState(params=params, batch_stats=batch_stats, opt_state=opt_state), metrics


def make_p_train_step(
    model: nn.Module, tx: optax.GradientTransformation, crop_resize: CropResize
) -> Callable[[TrainState, Mapping[str, np.ndarray]], tuple[TrainState, dict[str, jax.Array]]]:
    """`train_step` over the devices of the batch's leading axis; the state is donated.

    The state goes in and comes out replicated (in_axes/out_axes None); the batch is split
    along its leading [devices] axis.
    """
    return jax.pmap(
        functools.partial(train_step, model=model, tx=tx, crop_resize=crop_resize),
        axis_name=AXIS,
        in_axes=(None, 0),
        out_axes=None,
        donate_argnums=(0,),
    )


def random_train_batch(
    config: Any, leading_shape: tuple[int, ...], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random data laid out as the input pipeline feeds `train_step` (tests, benchmarks):
    uint8 `crops` [*leading_shape, T, P, P, 3] of the configured crop sides, `crop_sizes`,
    `flips` and `labels`, each with leading axes `leading_shape`."""
    padded, length = max_crop_side(config), config.input.clip_length
    crops = rng.integers(0, 256, (*leading_shape, length, padded, padded, 3), dtype=np.uint8)
    return {
        'crops': crops,
        'crop_sizes': rng.choice(crop_sides(config), leading_shape).astype(np.int32),
        'flips': rng.random(leading_shape) < 0.5,
        'labels': rng.integers(0, config.model.num_classes, leading_shape).astype(np.int32),
    }


def replicate(tree: Any, devices: Sequence[jax.Device]) -> Any:
    """A copy of `tree` on every device, as `make_p_train_step` takes its state."""
    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec())
    return jax.device_put(tree, sharding)


def eval_step(
    model: nn.Module, variables: Any, clips: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per-device class probabilities and cross-entropy of a batch of clips."""
    logits = model.apply(variables, clips, train=False).astype(jnp.float32)
    log_probabilities = jax.nn.log_softmax(logits)
    losses = -jnp.take_along_axis(log_probabilities, labels[:, None], axis=-1)[:, 0]
    return jnp.exp(log_probabilities), losses


@functools.lru_cache(maxsize=8)
def pmapped_eval_step(model: nn.Module) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """`eval_step` over the local devices, compiled once per model."""
    return jax.pmap(functools.partial(eval_step, model), axis_name=AXIS, in_axes=(None, 0, 0))
