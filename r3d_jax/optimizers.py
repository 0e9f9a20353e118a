"""Optimisers and learning-rate schedules, with the reference's PyTorch semantics.

The reference trains with `torch.optim.SGD` (dampened momentum, weight decay added to the
gradient) and `ReduceLROnPlateau` on the validation loss. `torch_sgd` reproduces the former as
an optax transformation; the plateau scheduler is a pure function of its state and the epoch's
validation loss, and reaches the optimiser through the `learning_rate` hyperparameter that
`optax.inject_hyperparams` keeps in the optimiser state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from r3d_jax import models

SCHEDULES = ('plateau', 'constant', 'step', 'cosine')
OPTIMIZERS = ('sgd', 'adamw')
# 'last_stage_and_head' trains what the reference's fine-tuning trains (`--ft_begin_index 4`):
# the last stage (conv5_x in the paper, `layer4` in the reference) and the classifier; for
# DenseNet the last dense block, `norm5` and the classifier (r3d_jax.models.ARCHITECTURES).
TRAINABLE = ('all', 'last_stage_and_head')
# ReduceLROnPlateau ignores reductions smaller than this (PyTorch's `eps`).
_PLATEAU_MIN_CHANGE = 1e-8


# ---------------------------------------------------------------------------------------------
# SGD exactly as torch.optim.SGD.


class TorchSGDState(NamedTuple):
    """Step count (the first step initialises the buffer) and the momentum buffer."""

    count: jax.Array
    momentum_buffer: optax.Updates


def torch_sgd_direction(
    momentum: float, dampening: float, weight_decay: float, nesterov: bool
) -> optax.GradientTransformation:
    """The step direction of torch.optim.SGD, before scaling by the learning rate.

    g = grad + weight_decay * param; buf = g on the first step, then
    buf = momentum * buf + (1 - dampening) * g; the direction is buf, or g + momentum * buf
    with Nesterov momentum.
    """
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            'Nesterov momentum needs momentum > 0 and dampening 0 (as in torch.optim.SGD); '
            f'got momentum={momentum}, dampening={dampening}.'
        )

    def init_fn(params: optax.Params) -> TorchSGDState | optax.EmptyState:
        if momentum == 0:
            return optax.EmptyState()
        return TorchSGDState(
            count=jnp.zeros([], jnp.int32), momentum_buffer=jax.tree.map(jnp.zeros_like, params)
        )

    def update_fn(
        updates: optax.Updates, state: Any, params: optax.Params | None = None
    ) -> tuple[optax.Updates, Any]:
        if weight_decay:
            if params is None:
                raise ValueError('Weight decay needs the parameters: call update(g, s, params).')
            updates = jax.tree.map(lambda g, p: g + weight_decay * p, updates, params)
        if momentum == 0:
            return updates, state
        first_step = state.count == 0
        buffer = jax.tree.map(
            lambda b, g: jnp.where(first_step, g, momentum * b + (1 - dampening) * g),
            state.momentum_buffer,
            updates,
        )
        if nesterov:
            direction = jax.tree.map(lambda g, b: g + momentum * b, updates, buffer)
        else:
            direction = buffer
        return direction, TorchSGDState(
            count=optax.safe_increment(state.count), momentum_buffer=buffer
        )

    return optax.GradientTransformation(init_fn, update_fn)


def torch_sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """torch.optim.SGD: params -= learning_rate * torch_sgd_direction(...)."""
    return optax.chain(
        torch_sgd_direction(momentum, dampening, weight_decay, nesterov),
        optax.scale_by_learning_rate(learning_rate),
    )


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules.


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.ScalarOrSchedule:
    """The learning rate per step; a constant for 'plateau', which changes it between epochs."""
    schedule = config.schedule
    base = config.optimizer.learning_rate
    if schedule.name in ('plateau', 'constant'):
        return base
    if schedule.name == 'step':
        boundaries: dict[int, float] = {}
        for epoch in schedule.step_epochs:
            step = int(epoch) * steps_per_epoch
            boundaries[step] = boundaries.get(step, 1.0) * schedule.step_factor
        return optax.piecewise_constant_schedule(base, boundaries)
    if schedule.name == 'cosine':
        total_steps = config.num_epochs * steps_per_epoch
        warmup_steps = round(schedule.warmup_epochs * steps_per_epoch)
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f'config.schedule.warmup_epochs={schedule.warmup_epochs} must lie in '
                f'[0, config.num_epochs={config.num_epochs}).'
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if warmup_steps else base,
            peak_value=base,
            warmup_steps=warmup_steps,
            decay_steps=total_steps,
            end_value=0.0,
        )
    raise ValueError(f'config.schedule.name must be one of {SCHEDULES}, got {schedule.name!r}.')


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """ReduceLROnPlateau (mode 'min', relative threshold) between epochs."""

    learning_rate: float
    best: float = math.inf  # Lowest validation loss so far.
    num_bad_epochs: int = 0  # Validations since `best` improved.

    def to_json(self) -> dict[str, Any]:
        best = None if math.isinf(self.best) else self.best
        return {
            'learning_rate': self.learning_rate,
            'best': best,
            'num_bad_epochs': self.num_bad_epochs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlateauState:
        best = math.inf if data['best'] is None else float(data['best'])
        return cls(float(data['learning_rate']), best, int(data['num_bad_epochs']))


def update_plateau(
    state: PlateauState, validation_loss: float, *, factor: float, patience: int, threshold: float
) -> PlateauState:
    """One ReduceLROnPlateau.step(validation_loss): cut the rate after `patience` bad epochs.

    A loss improves when it is below best * (1 - threshold); the rate is multiplied by `factor`
    once more than `patience` validations in a row have not improved.
    """
    if validation_loss < state.best * (1 - threshold):
        return dataclasses.replace(state, best=validation_loss, num_bad_epochs=0)
    num_bad_epochs = state.num_bad_epochs + 1
    if num_bad_epochs <= patience:
        return dataclasses.replace(state, num_bad_epochs=num_bad_epochs)
    reduced = state.learning_rate * factor
    if state.learning_rate - reduced <= _PLATEAU_MIN_CHANGE:
        reduced = state.learning_rate
    return dataclasses.replace(state, learning_rate=reduced, num_bad_epochs=0)


# ---------------------------------------------------------------------------------------------
# The optimiser of a config.


def trained_modules_labels(params: optax.Params, trained: Sequence[str]) -> Any:
    """'trained' for the parameters of the top-level modules `trained` names, 'frozen' elsewhere.

    An entry of `trained` names a module (`fc`) or the blocks `<entry>_<i>` (`layer4`).
    """

    def named(module: str, name: str) -> bool:
        return module == name or module.startswith(f'{name}_')

    def is_trained(module: str) -> bool:
        return any(named(module, name) for name in trained)

    absent = [name for name in trained if not any(named(module, name) for module in params)]
    if absent:
        raise ValueError(
            f"trainable='last_stage_and_head' trains {list(trained)}, but the model has no "
            f'{absent} (its modules: {sorted(params)}).'
        )
    labels = {}
    for module, tree in params.items():
        label = 'trained' if is_trained(module) else 'frozen'
        labels[module] = jax.tree.map(lambda _, label=label: label, tree)
    return labels


def create_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.GradientTransformation:
    """The optimiser of `config.optimizer` with the learning rate of `config.schedule`.

    The learning rate sits in the state's `hyperparams['learning_rate']`, where the plateau
    scheduler sets it (`set_learning_rate`) and the loop reads it for logging.
    """
    settings = config.optimizer
    if settings.name not in OPTIMIZERS:
        raise ValueError(
            f'config.optimizer.name must be one of {OPTIMIZERS}, got {settings.name!r}.'
        )
    if settings.trainable not in TRAINABLE:
        raise ValueError(
            f'config.optimizer.trainable must be one of {TRAINABLE}, got {settings.trainable!r}.'
        )

    def optimizer(learning_rate: jax.Array) -> optax.GradientTransformation:
        if settings.name == 'sgd':
            step = torch_sgd(
                learning_rate,
                momentum=settings.momentum,
                dampening=settings.dampening,
                weight_decay=settings.weight_decay,
                nesterov=settings.nesterov,
            )
        else:
            step = optax.adamw(
                learning_rate,
                b1=settings.adam_b1,
                b2=settings.adam_b2,
                eps=settings.adam_eps,
                weight_decay=settings.weight_decay,
            )
        if settings.trainable == 'all':
            return step
        trained = models.architecture(config.model).last_stage_and_head
        return optax.multi_transform(
            {'trained': step, 'frozen': optax.set_to_zero()},
            functools.partial(trained_modules_labels, trained=trained),
        )

    return optax.inject_hyperparams(optimizer)(
        learning_rate=learning_rate_schedule(config, steps_per_epoch)
    )


def get_learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate of the last update (or the first, before any)."""
    return opt_state.hyperparams['learning_rate']


def set_learning_rate(opt_state: Any, learning_rate: jax.Array) -> Any:
    """`opt_state` with a new learning rate; `learning_rate` must be placed like the state."""
    return opt_state._replace(hyperparams={**opt_state.hyperparams, 'learning_rate': learning_rate})
