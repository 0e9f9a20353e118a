"""The optimiser and schedules follow the reference's PyTorch semantics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from r3d_jax import defaults, optimizers
from r3d_jax.models import architecture, create_model, expected_variables


def _torch_trajectory(params, grads_per_step, learning_rates, **sgd_kwargs):
    """Parameters after each torch.optim.SGD step, the learning rate changed between steps."""
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    sgd = torch.optim.SGD(tensors, lr=learning_rates[0], **sgd_kwargs)
    trajectory = []
    for grads, learning_rate in zip(grads_per_step, learning_rates, strict=True):
        for group in sgd.param_groups:
            group['lr'] = learning_rate
        for tensor, grad in zip(tensors, grads, strict=True):
            tensor.grad = torch.tensor(grad)
        sgd.step()
        trajectory.append([t.detach().numpy().copy() for t in tensors])
    return trajectory


def _optax_trajectory(transformation, params, grads_per_step, learning_rates):
    params = [jnp.asarray(p) for p in params]
    state = transformation.init(params)
    trajectory = []
    for grads, learning_rate in zip(grads_per_step, learning_rates, strict=True):
        state = optimizers.set_learning_rate(state, jnp.float32(learning_rate))
        updates, state = transformation.update([jnp.asarray(g) for g in grads], state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append([np.asarray(p) for p in params])
    return trajectory


@pytest.mark.parametrize(
    'sgd_kwargs',
    [
        {'momentum': 0.9, 'dampening': 0.9, 'weight_decay': 1e-3},  # The reference's recipe.
        {'momentum': 0.9, 'dampening': 0.0, 'weight_decay': 1e-2, 'nesterov': True},
        {'momentum': 0.0, 'dampening': 0.5, 'weight_decay': 1e-2},  # No buffer, no dampening.
    ],
)
def test_torch_sgd_matches_torch_optim_sgd_over_several_steps(sgd_kwargs):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
    grads_per_step = [
        [rng.normal(size=p.shape).astype(np.float32) for p in params] for _ in range(6)
    ]
    learning_rates = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001]  # As the plateau scheduler changes it.

    transformation = optax.inject_hyperparams(
        lambda learning_rate: optimizers.torch_sgd(learning_rate, **sgd_kwargs)
    )(learning_rate=0.1)
    ours = _optax_trajectory(transformation, params, grads_per_step, learning_rates)
    reference = _torch_trajectory(params, grads_per_step, learning_rates, **sgd_kwargs)
    for step, (mine, theirs) in enumerate(zip(ours, reference, strict=True)):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f'step {step}')


def test_first_sgd_step_takes_the_whole_gradient_despite_dampening():
    # PyTorch initialises the buffer with the gradient, not (1 - dampening) * gradient.
    transformation = optimizers.torch_sgd(1.0, momentum=0.9, dampening=0.9)
    params = jnp.zeros(2)
    state = transformation.init(params)
    updates, state = transformation.update(jnp.array([1.0, -2.0]), state, params)
    np.testing.assert_allclose(updates, [-1.0, 2.0])
    updates, _ = transformation.update(jnp.array([1.0, -2.0]), state, params)
    np.testing.assert_allclose(updates, [-1.0, 2.0], rtol=1e-6)  # 0.9 * g + 0.1 * g.


def test_nesterov_with_dampening_is_rejected_like_pytorch():
    with pytest.raises(ValueError, match='Nesterov momentum needs momentum > 0 and dampening 0'):
        optimizers.torch_sgd(0.1, momentum=0.9, dampening=0.9, nesterov=True)


class _TorchPlateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau on a dummy optimiser, for comparison."""

    def __init__(self, learning_rate, factor, patience, threshold):
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode='min', factor=factor, patience=patience, threshold=threshold
        )

    def step(self, loss):
        self.scheduler.step(loss)
        return self.optimizer.param_groups[0]['lr']


def test_plateau_scheduler_matches_reduce_lr_on_plateau():
    rng = np.random.default_rng(1)
    # Improving, then flat (within the relative threshold), then noisy, then NaN.
    losses = [3.0, 2.5, 2.4, *([2.39999] * 6), *(2.4 + rng.normal(0, 0.01, 20)), math.nan, 1.0]
    reference = _TorchPlateau(0.1, factor=0.1, patience=3, threshold=1e-4)
    state = optimizers.PlateauState(learning_rate=0.1)
    reductions = 0
    for loss in losses:
        previous = state.learning_rate
        state = optimizers.update_plateau(state, loss, factor=0.1, patience=3, threshold=1e-4)
        assert state.learning_rate == pytest.approx(reference.step(loss), rel=1e-12)
        reductions += state.learning_rate < previous
    assert reductions >= 2


def test_plateau_waits_patience_epochs_before_cutting():
    state = optimizers.PlateauState(learning_rate=0.1)
    state = optimizers.update_plateau(state, 1.0, factor=0.1, patience=10, threshold=1e-4)
    rates = []
    for _ in range(11):
        state = optimizers.update_plateau(state, 1.0, factor=0.1, patience=10, threshold=1e-4)
        rates.append(state.learning_rate)
    assert rates[:10] == [0.1] * 10
    assert rates[10] == pytest.approx(0.01)


def test_plateau_state_round_trips_through_json():
    state = optimizers.PlateauState(learning_rate=0.01, best=1.5, num_bad_epochs=4)
    assert optimizers.PlateauState.from_json(state.to_json()) == state
    fresh = optimizers.PlateauState(learning_rate=0.1)
    assert optimizers.PlateauState.from_json(fresh.to_json()) == fresh


def _config(**schedule):
    config = defaults.get_config()
    config.num_epochs = 10
    config.schedule.update(schedule)
    return config


def test_step_schedule_multiplies_at_the_given_epochs():
    config = _config(name='step', step_epochs=(2, 5), step_factor=0.5)
    schedule = optimizers.learning_rate_schedule(config, steps_per_epoch=4)
    assert float(schedule(7)) == pytest.approx(0.1)
    assert float(schedule(8)) == pytest.approx(0.05)
    assert float(schedule(20)) == pytest.approx(0.025)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    config = _config(name='cosine', warmup_epochs=1)
    schedule = optimizers.learning_rate_schedule(config, steps_per_epoch=4)
    assert float(schedule(0)) == 0.0
    assert float(schedule(2)) == pytest.approx(0.05)
    assert float(schedule(4)) == pytest.approx(0.1)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-9)


def test_unknown_schedule_and_optimizer_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"config.schedule.name must be one of .* 'linear'"):
        optimizers.learning_rate_schedule(_config(name='linear'), steps_per_epoch=4)
    config = defaults.get_config()
    config.optimizer.name = 'lamb'
    with pytest.raises(ValueError, match=r"config.optimizer.name must be one of .* 'lamb'"):
        optimizers.create_optimizer(config, steps_per_epoch=4)


def _params():
    return {
        'conv1': {'kernel': jnp.ones((2, 2))},
        'layer3_0': {'conv1': {'kernel': jnp.ones(3)}},
        'layer4_0': {'conv1': {'kernel': jnp.ones(3)}},
        'layer4_1': {'bn1': {'scale': jnp.ones(3)}},
        'fc': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)},
    }


def test_last_stage_and_head_trains_only_the_layer4_blocks_and_fc():
    config = defaults.get_config()
    config.optimizer.trainable = 'last_stage_and_head'
    transformation = optimizers.create_optimizer(config, steps_per_epoch=4)
    params = _params()
    state = transformation.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = transformation.update(grads, state, params)
    changed = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
    assert changed == {
        'conv1': {'kernel': False},
        'layer3_0': {'conv1': {'kernel': False}},
        'layer4_0': {'conv1': {'kernel': True}},
        'layer4_1': {'bn1': {'scale': True}},
        'fc': {'kernel': True, 'bias': True},
    }


@pytest.mark.parametrize(
    'arch, depth, trained',
    [
        ('resnet', 18, {'layer4_0', 'layer4_1', 'fc'}),
        ('preresnet', 18, {'layer4_0', 'layer4_1', 'fc'}),
        ('resnext', 50, {'layer4_0', 'layer4_1', 'layer4_2', 'fc'}),
        ('r2plus1d', 18, {'layer4_0', 'layer4_1', 'fc'}),
        # The reference's densenet fine-tuning: the last dense block, norm5 and the classifier.
        ('densenet', 121, {'denseblock4', 'norm5', 'classifier'}),
    ],
)
def test_last_stage_and_head_follows_the_reference_for_every_family(arch, depth, trained):
    config = defaults.get_config()
    config.model.update(arch=arch, depth=depth)
    params = expected_variables(create_model(config), (1, 16, 32, 32, 3))['params']
    labels = optimizers.trained_modules_labels(
        params, architecture(config.model).last_stage_and_head
    )
    found = {module for module, tree in labels.items() if 'trained' in jax.tree.leaves(tree)}
    assert found == trained
    for module in set(labels) - trained:
        assert set(jax.tree.leaves(labels[module])) == {'frozen'}


def test_last_stage_and_head_names_what_a_model_lacks():
    with pytest.raises(ValueError, match=r"trains \['denseblock4', 'norm5', 'classifier'\], but"):
        optimizers.trained_modules_labels(_params(), ('denseblock4', 'norm5', 'classifier'))


def test_learning_rate_is_read_and_set_in_the_optimizer_state():
    config = defaults.get_config()
    transformation = optimizers.create_optimizer(config, steps_per_epoch=4)
    params = _params()
    state = transformation.init(params)
    assert float(optimizers.get_learning_rate(state)) == pytest.approx(0.1)
    state = optimizers.set_learning_rate(state, jnp.float32(0.01))
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = transformation.update(grads, state, params)
    # First SGD step: -lr * (g + wd * p) = -0.01 * (1 + 1e-3).
    np.testing.assert_allclose(updates['fc']['bias'], -0.01 * 1.001, rtol=1e-6)


def test_adamw_is_selected_by_name():
    config = defaults.get_config()
    config.optimizer.name = 'adamw'
    config.optimizer.weight_decay = 0.0
    transformation = optimizers.create_optimizer(config, steps_per_epoch=4)
    params = _params()
    updates, _ = transformation.update(
        jax.tree.map(jnp.ones_like, params), transformation.init(params), params
    )
    # Adam's first step moves every parameter by about the learning rate.
    np.testing.assert_allclose(updates['fc']['bias'], -0.1, rtol=1e-4)
