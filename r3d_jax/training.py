"""The training loop: data-parallel SGD over all local devices, validation, checkpoints.

Reads top to bottom in the order things happen: the config check, the training state and where
it comes from (fresh, `config.init_from`, or the workdir's latest checkpoint), the checkpoints
that record where the loop stands, and `train_and_evaluate`. The per-device train step itself
(named-axis collectives under `jax.pmap`) is in `r3d_jax.steps`; what the loop measures around
it in `r3d_jax.step_metrics`; stop signals in `r3d_jax.stop_signals`. What it shows a person
goes through `r3d_jax.console`: a line per phase, a bar over the steps, the periodic metrics.

Resuming is exact: a checkpoint holds the variables, the optimiser state, the position in the
epoch and the plateau scheduler's state, and the input pipeline is deterministic given
(config.seed, epoch, start_step), so an interrupted run ends where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
import tensorflow_datasets as tfds
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils

from r3d_jax import backends, checkpoints, console, defaults, evaluation, optimizers, reports
from r3d_jax.crop_resize import CropResize
from r3d_jax.data import datasets, input_pipeline
from r3d_jax.models import (
    architecture,
    create_model,
    expected_variables,
    init_variables,
    upgrade_model_config,
)
from r3d_jax.step_metrics import (
    StepMetrics,
    Throughput,
    TrainingDivergedError,
    batches_with_wait,
)
from r3d_jax.steps import AXIS, TrainState, make_p_train_step, replicate
from r3d_jax.stop_signals import StopSignals

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The config: every field must exist in the schema, r3d_jax/defaults.py.


def check_config(config: ml_collections.ConfigDict) -> None:
    """Rejects unknown fields (typos would otherwise be ignored) and unusable combinations."""
    defaults.check_known_fields(config)
    num_devices = jax.device_count()
    for field in ('batch_size', 'eval_batch_size'):
        value = config[field]
        if value < num_devices or value % num_devices:
            raise defaults.ConfigError(
                f'config.{field}={value} must split evenly over the {num_devices} devices '
                f'({jax.process_count()} process(es)); use a multiple of {num_devices}.'
            )
    unknown_modes = set(config.final_eval_modes) - set(evaluation.EVAL_MODES)
    if unknown_modes or not config.final_eval_modes:
        raise defaults.ConfigError(
            f'config.final_eval_modes {tuple(config.final_eval_modes)} must be a non-empty '
            f'subset of {evaluation.EVAL_MODES}.'
        )
    if config.schedule.name == 'plateau' and config.eval_every_epochs < 1:
        raise defaults.ConfigError(
            "config.schedule.name='plateau' follows the validation loss, so "
            f'config.eval_every_epochs must be at least 1 (got {config.eval_every_epochs}).'
        )


# ---------------------------------------------------------------------------------------------
# The initial state: fresh, or from `config.init_from`.


def initial_variables(
    config: ml_collections.ConfigDict, model: nn.Module, rng: jax.Array
) -> dict[str, Any]:
    """Fresh variables, or `config.init_from`'s with `config.init_from_skip` modules fresh.

    The checkpoint is checked against the model's shapes before anything is computed.
    """
    clip_shape = evaluation.clip_shape(config)
    if not config.init_from:
        return jax.device_get(init_variables(model, rng, clip_shape))
    expected = expected_variables(model, clip_shape)
    skip = set(config.init_from_skip)
    modules = set(expected['params']) | set(expected['batch_stats'])
    if skip - modules:
        raise defaults.ConfigError(
            f'config.init_from_skip names {sorted(skip - modules)}, which the model does not '
            f'have (its modules: {sorted(expected["params"])}).'
        )

    def without_skipped(variables: Mapping[str, Any]) -> dict[str, Any]:
        return {
            collection: {m: v for m, v in tree.items() if m not in skip}
            for collection, tree in variables.items()
        }

    directory = checkpoints.resolve_checkpoint(config.init_from)
    source = f'config.init_from checkpoint {directory}'
    loaded, metadata = checkpoints.load_variables(directory)
    variables = without_skipped(loaded)
    checkpoints.check_variables_fit(variables, without_skipped(expected), source)
    _warn_on_other_normalisation(config, metadata, source)
    if skip:
        fresh = jax.device_get(init_variables(model, rng, clip_shape))
        variables = {c: {**fresh[c], **variables.get(c, {})} for c in fresh}
    return jax.tree.map(lambda value, like: np.asarray(value, like.dtype), variables, expected)


def _warn_on_other_normalisation(
    config: ml_collections.ConfigDict, metadata: Mapping[str, Any], source: str
) -> None:
    """Weights expect the input scaling they were trained with; a mismatch is worth a warning."""
    trained = metadata.get('input') or {}
    for field in ('value_scale', 'mean', 'std'):
        if field in trained and not np.allclose(trained[field], config.input[field]):
            logger.warning(
                '%s was trained with input.%s=%s but config.input.%s=%s.',
                source,
                field,
                trained[field],
                field,
                config.input[field],
            )


def create_train_state(
    config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation
) -> TrainState:
    """The state before the first step, on the host."""
    variables = initial_variables(config, model, jax.random.key(config.seed))
    opt_state = jax.device_get(tx.init(variables['params']))
    return TrainState(
        params=variables['params'], batch_stats=variables['batch_stats'], opt_state=opt_state
    )


# ---------------------------------------------------------------------------------------------
# Where the loop stands, and the checkpoints that record it.


@dataclasses.dataclass
class Progress:
    """The loop's position and the state it carries between epochs (all JSON-able)."""

    epoch: int  # The epoch being trained (== num_epochs when training is done).
    position: int  # Steps of `epoch` already taken, 0 .. steps_per_epoch.
    plateau: optimizers.PlateauState
    best_val_accuracy: float | None = None

    def step(self, steps_per_epoch: int) -> int:
        """Steps taken since the start of training."""
        return self.epoch * steps_per_epoch + self.position


def checkpoint_metadata(
    config: ml_collections.ConfigDict,
    class_names: Sequence[str],
    progress: Progress,
    steps_per_epoch: int,
) -> dict[str, Any]:
    """The `metadata` item: what `checkpoints.load_variables` readers need, and the position."""
    return {
        'model': config.model.to_dict(),
        'input': config.input.to_dict(),
        'data': {
            'dataset': config.data.dataset,
            'frame_short_side': config.data.frame_short_side,
            'jpeg_quality': config.data.jpeg_quality,
        },
        'class_names': list(class_names),
        'epoch': progress.epoch,
        'step': progress.step(steps_per_epoch),
        'position_in_epoch': progress.position,
        'steps_per_epoch': steps_per_epoch,
        'batch_size': config.batch_size,
    }


def _loop_state(progress: Progress) -> dict[str, Any]:
    return {
        'plateau': progress.plateau.to_json(),
        'best_val_accuracy': progress.best_val_accuracy,
    }


def _check_resumable(
    config: ml_collections.ConfigDict, steps_per_epoch: int, directory: str
) -> Callable[[Mapping[str, Any]], None]:
    """A check that a checkpoint's run is the one `config` describes, so resuming is exact."""

    def check(metadata: Mapping[str, Any]) -> None:
        wanted = {
            'model': config.model.to_dict(),
            'steps_per_epoch': steps_per_epoch,
            'batch_size': config.batch_size,
        }
        # Checkpoints of earlier versions describe their model in the schema of their day.
        found = {**metadata, 'model': upgrade_model_config(metadata.get('model') or {})}
        for key, value in wanted.items():
            # JSON turns tuples into lists; compare both through that round trip.
            if _json_like(found.get(key)) != _json_like(value):
                raise checkpoints.CheckpointError(
                    f'The checkpoints in {directory} come from another run: their {key} is '
                    f'{metadata.get(key)} but the config gives {value}. Resume with the same '
                    'config or train in a new --workdir.'
                )

    return check


def _json_like(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json_like(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_like(v) for v in value]
    return value


def _restore_or_start(
    config: ml_collections.ConfigDict,
    manager: Any,
    host_state: TrainState,
    steps_per_epoch: int,
) -> tuple[TrainState, Progress]:
    """The workdir's latest readable checkpoint, or the fresh state at epoch 0."""
    restored = checkpoints.restore_training_checkpoint(
        manager,
        variables={'params': host_state.params, 'batch_stats': host_state.batch_stats},
        opt_state=host_state.opt_state,
        check_metadata=_check_resumable(config, steps_per_epoch, str(manager.directory)),
    )
    if restored is None:
        return host_state, Progress(
            epoch=0,
            position=0,
            plateau=optimizers.PlateauState(learning_rate=config.optimizer.learning_rate),
        )
    _, variables, opt_state, metadata, loop_state = restored
    state = TrainState(
        params=variables['params'], batch_stats=variables['batch_stats'], opt_state=opt_state
    )
    return state, Progress(
        epoch=int(metadata['epoch']),
        position=int(metadata['position_in_epoch']),
        plateau=optimizers.PlateauState.from_json(loop_state['plateau']),
        best_val_accuracy=loop_state['best_val_accuracy'],
    )


# ---------------------------------------------------------------------------------------------
# TensorBoard's view of the config.


def _flatten_for_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as TensorBoard hyperparameters: dotted names, scalars or strings."""
    flat = {}
    for path, value in _flatten(config.to_dict()).items():
        flat[path] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


# ---------------------------------------------------------------------------------------------
# The loop.


@dataclasses.dataclass
class TrainingOutcome:
    """What a call of `train_and_evaluate` did, for the summary a command prints."""

    state: TrainState
    step: int  # Steps taken since the start of training, by this run and the ones before.
    total_steps: int
    stopped_by: str | None  # The signal that stopped the run early, if one did.
    training_seconds: float  # This run's time in the loop: steps and validations.
    best_val_accuracy: float | None
    # The final evaluations by protocol (`config.final_eval_modes`), when they ran.
    final_results: dict[str, evaluation.EvalResult]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainingOutcome:
    """Trains `config` in `workdir`, resuming from its checkpoints; says what it did.

    Writes TensorBoard events and checkpoints to `workdir`; validates every
    `config.eval_every_epochs` epochs and scores the paper's video accuracy at the end.
    """
    check_config(config)
    ensure_dataset(config)
    dataset = input_pipeline.dataset_metadata(config)
    num_train_examples = dataset.num_examples[config.data.train_split]
    steps_per_epoch = input_pipeline.steps_per_epoch(config, num_train_examples)
    total_steps = config.num_epochs * steps_per_epoch
    console.phase(
        f'Training {architecture(config.model).name(config.model.depth)}: '
        f'{num_train_examples} videos, '
        f'{steps_per_epoch} steps of {config.batch_size} clips per epoch, '
        f'{config.num_epochs} epochs'
    )

    model = create_model(config, bn_axis_name=AXIS)
    tx = optimizers.create_optimizer(config, steps_per_epoch)
    manager = checkpoints.create_manager(workdir, keep=config.checkpoints_to_keep)
    host_state, progress = _restore_or_start(
        config, manager, create_train_state(config, model, tx), steps_per_epoch
    )
    if progress.step(steps_per_epoch):
        console.note(
            f'Resuming from the checkpoint of step {progress.step(steps_per_epoch)} '
            f'(epoch {progress.epoch}).'
        )
    devices = jax.local_devices()
    state = replicate(host_state, devices)
    p_train_step = make_p_train_step(model, tx, CropResize.from_config(config))

    is_writer = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_writer)
    if progress.epoch == 0 and progress.position == 0:
        writer.write_hparams(_flatten_for_hparams(config))
    report_progress = periodic_actions.ReportProgress(
        num_train_steps=total_steps, writer=writer, every_steps=config.log_every_steps
    )

    def save(metrics: Mapping[str, float] | None = None) -> None:
        step = progress.step(steps_per_epoch)
        if manager.latest_step() == step:
            manager.delete(step)  # Written on a stop request before its epoch ended.
        checkpoints.save_training_checkpoint(
            manager,
            step,
            variables=state.variables,
            opt_state=state.opt_state,
            metadata=checkpoint_metadata(config, dataset.class_names, progress, steps_per_epoch),
            loop_state=_loop_state(progress),
            metrics=metrics,
        )

    def outcome(
        training_seconds: float,
        stopped_by: str | None = None,
        final_results: dict[str, evaluation.EvalResult] | None = None,
    ) -> TrainingOutcome:
        return TrainingOutcome(
            state=state,
            step=progress.step(steps_per_epoch),
            total_steps=total_steps,
            stopped_by=stopped_by,
            training_seconds=training_seconds,
            best_val_accuracy=progress.best_val_accuracy,
            final_results=final_results or {},
        )

    step_metrics, throughput = StepMetrics(), Throughput(config.batch_size)
    bar, started = None, time.monotonic()
    if progress.epoch < config.num_epochs:
        console.phase('Compiling the training step')
    try:
        with StopSignals() as stop_signals:
            while progress.epoch < config.num_epochs:
                epoch = progress.epoch
                batches = (
                    input_pipeline.create_train_iterator(
                        config, epoch=epoch, start_step=progress.position
                    )
                    if progress.position < steps_per_epoch
                    else iter(())
                )
                throughput.reset()
                for batch, waited in batches_with_wait(iter(batches)):
                    state, metrics = p_train_step(state, batch)
                    progress.position += 1
                    step = progress.step(steps_per_epoch)
                    step_metrics.add(step, metrics)  # Waits for the step before this one.
                    if bar is None:
                        bar = console.step_progress(
                            total_steps=total_steps,
                            done_steps=step - 1,
                            clips_per_step=config.batch_size,
                        )
                    bar.update()
                    throughput.add(waited)
                    report_progress(step)
                    if step % config.log_every_steps == 0 or progress.position == steps_per_epoch:
                        summary = {**step_metrics.summary(), **throughput.read()}
                        _write_train_summary(writer, step, total_steps, epoch, summary)
                    if stop_signals.should_stop(step, config.log_every_steps):
                        step_metrics.settle()
                        save()
                        logger.info('Stopped at step %d; the checkpoint resumes here.', step)
                        return outcome(time.monotonic() - started, stop_signals.signal_name)
                    if (
                        config.checkpoint_every_steps
                        and step % config.checkpoint_every_steps == 0
                        and progress.position < steps_per_epoch
                    ):
                        step_metrics.settle()
                        save()
                if progress.position != steps_per_epoch:
                    raise RuntimeError(
                        f'The training input of epoch {epoch} ended after {progress.position} '
                        f'of {steps_per_epoch} steps.'
                    )
                step_metrics.settle()
                with bar.paused() if bar is not None else contextlib.nullcontext():
                    state, validation = _end_epoch(
                        config, model, state, progress, writer, report_progress, steps_per_epoch
                    )
                save(validation)
                if stop_signals.should_stop(progress.step(steps_per_epoch), at_sync_point=True):
                    logger.info('Stopped after epoch %d; the checkpoint resumes here.', epoch)
                    return outcome(time.monotonic() - started, stop_signals.signal_name)
        if bar is not None:
            bar.close()
        training_seconds = time.monotonic() - started  # The final evaluation comes after.
        final_results = None
        if config.video_eval_at_end:
            with report_progress.timed('final evaluation'):
                final_results = _final_evaluations(
                    config, model, state, workdir, writer, dataset.class_names, total_steps
                )
        return outcome(training_seconds, final_results=final_results)
    except TrainingDivergedError as error:
        manager.wait_until_finished()
        latest = manager.latest_step()
        kept = (
            f'The last good checkpoint, {checkpoints.checkpoints_directory(workdir)}/{latest}, '
            'is kept.'
            if latest is not None
            else 'No checkpoint had been saved yet.'
        )
        raise TrainingDivergedError(f'{error} {kept}') from None
    finally:
        if bar is not None:
            bar.close()
        manager.wait_until_finished()
        manager.close()
        writer.close()


def _write_train_summary(
    writer: metric_writers.MetricWriter,
    step: int,
    total_steps: int,
    epoch: int,
    summary: Mapping[str, float],
) -> None:
    writer.write_scalars(step, {f'train/{key}': value for key, value in summary.items()})
    logger.info(
        'epoch %d  step %d/%d  loss %.4f  accuracy %.3f  lr %.3g  %.1f clips/s  '
        'input wait %.0f%%',
        epoch,
        step,
        total_steps,
        summary['loss'],
        summary['accuracy'],
        summary['learning_rate'],
        summary['clips_per_second'],
        100 * summary['input_wait_fraction'],
    )


def ensure_dataset(config: ml_collections.ConfigDict) -> None:
    """Builds the dataset if the config asks for it; process 0 first, the others after it.

    The build shows its own phases and progress: TFDS's bars are off, and the notices TFDS
    prints to stdout go to the log.
    """
    tfds.disable_progress_bar()
    with console.printed_to_log('tensorflow_datasets'):
        if jax.process_index() == 0:
            datasets.ensure_dataset(config.data)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices('r3d_jax dataset ready')
            datasets.ensure_dataset(config.data)


def _end_epoch(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    state: TrainState,
    progress: Progress,
    writer: metric_writers.MetricWriter,
    report_progress: periodic_actions.ReportProgress,
    steps_per_epoch: int,
) -> tuple[TrainState, dict[str, float] | None]:
    """Validation (when due), the plateau scheduler, and the move to the next epoch.

    Returns the state (with the plateau's learning rate) and the validation metrics that rank
    the epoch's checkpoint, or None when this epoch was not validated.
    """
    epoch = progress.epoch
    step = (epoch + 1) * steps_per_epoch
    validation = None
    if config.eval_every_epochs and (epoch + 1) % config.eval_every_epochs == 0:
        console.phase(f'Validation after epoch {epoch}: clip accuracy on the test split')
        with report_progress.timed('validation'):
            result = evaluation.evaluate(config, model, state.variables, mode='clip')
        validation = {'val_loss': result.clip_loss, checkpoints.BEST_METRIC: result.clip_top1}
        best = progress.best_val_accuracy
        progress.best_val_accuracy = max(result.clip_top1, best if best is not None else -1.0)
        writer.write_scalars(
            step,
            {
                'val/loss': result.clip_loss,
                'val/accuracy': result.clip_top1,
                'val/top5_accuracy': result.clip_top5,
                'val/best_accuracy': progress.best_val_accuracy,
            },
        )
        logger.info(
            'epoch %d  validation  loss %.4f  clip accuracy %.4f  top-5 %.4f  best %.4f',
            epoch,
            result.clip_loss,
            result.clip_top1,
            result.clip_top5,
            progress.best_val_accuracy,
        )
        if config.schedule.name == 'plateau':
            previous = progress.plateau.learning_rate
            progress.plateau = optimizers.update_plateau(
                progress.plateau,
                result.clip_loss,
                factor=config.schedule.plateau_factor,
                patience=config.schedule.plateau_patience,
                threshold=config.schedule.plateau_threshold,
            )
            if progress.plateau.learning_rate != previous:
                logger.info(
                    'Validation loss has not improved for %d epochs: learning rate %.3g -> %.3g.',
                    config.schedule.plateau_patience + 1,
                    previous,
                    progress.plateau.learning_rate,
                )
    if config.schedule.name == 'plateau':
        learning_rate = replicate(
            np.float32(progress.plateau.learning_rate), jax.local_devices()
        )
        state = state.replace(
            opt_state=optimizers.set_learning_rate(state.opt_state, learning_rate)
        )
    progress.epoch += 1
    progress.position = 0
    writer.flush()
    return state, validation


def _final_evaluations(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    state: TrainState,
    workdir: str,
    writer: metric_writers.MetricWriter,
    class_names: Sequence[str],
    step: int,
) -> dict[str, evaluation.EvalResult]:
    """Video accuracy by each protocol of `config.final_eval_modes` ('video': the paper's
    number, over every clip of every test video), each with its report."""
    results = {}
    for mode in config.final_eval_modes:
        console.phase(f'Final evaluation: {evaluation.describe_protocol(config, mode)}')
        result = evaluation.evaluate(config, model, state.variables, mode=mode)
        logger.info(
            'Video accuracy (%s): top-1 %.4f, top-5 %.4f, mean class accuracy %.4f '
            '(%d videos).',
            mode,
            result.video_top1,
            result.video_top5,
            result.mean_class_accuracy,
            result.num_videos,
        )
        if jax.process_index() == 0:
            reports.write_report(
                result,
                workdir=workdir,
                class_names=class_names,
                writer=writer,
                step=step,
                extra={'environment': backends.environment()},
            )
        results[mode] = result
    return results
