"""Orbax checkpoints of model variables, with the metadata needed to use them.

A checkpoint directory holds two Orbax items written together and atomically (Orbax writes to
a temporary directory and renames it when complete, so a half-written checkpoint never looks
whole):
- `variables`: the Flax variables `{'params': ..., 'batch_stats': ...}` as float32 arrays;
- `metadata`: JSON with at least `model` (the model config as a dict) and `class_names`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)

VARIABLES = 'variables'
METADATA = 'metadata'


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or does not fit the model it is loaded into."""


def save_variables(directory: str, variables: Any, metadata: dict[str, Any]) -> None:
    """Writes `variables` and `metadata` to `directory` (which must not exist yet)."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory):
        raise CheckpointError(f'{directory} already exists; choose a new output directory.')
    host_variables = jax.tree.map(np.asarray, jax.device_get(variables))
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(
            directory,
            args=ocp.args.Composite(
                **{
                    VARIABLES: ocp.args.StandardSave(host_variables),
                    METADATA: ocp.args.JsonSave(metadata),
                }
            ),
        )


def load_variables(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a checkpoint written by `save_variables` (or a training checkpoint's step dir)."""
    directory = os.path.abspath(directory)
    for item in (VARIABLES, METADATA):
        if not os.path.isdir(os.path.join(directory, item)):
            raise CheckpointError(
                f'{directory} is not a complete r3d-jax checkpoint: item {item!r} is missing.'
            )
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(
            directory,
            args=ocp.args.Composite(
                **{VARIABLES: ocp.args.StandardRestore(), METADATA: ocp.args.JsonRestore()}
            ),
        )
    return dict(restored[VARIABLES]), dict(restored[METADATA])


def check_variables_fit(variables: Any, expected: Any, source: str) -> None:
    """Raises `CheckpointError` naming the parameters that are missing, extra or misshapen."""
    found = _shapes_by_path(variables)
    wanted = _shapes_by_path(expected)
    missing = sorted(wanted.keys() - found.keys())
    if missing:
        raise CheckpointError(
            f"{source} lacks the model's parameters {_listed(missing)}; "
            'it was written for another model.'
        )
    extra = sorted(found.keys() - wanted.keys())
    if extra:
        raise CheckpointError(
            f'{source} holds parameters the model does not have: {_listed(extra)}; '
            'it was written for another model.'
        )
    misshapen = [
        f'parameter {path} has shape {found[path]} but the model expects {shape}'
        for path, shape in sorted(wanted.items())
        if found[path] != shape
    ]
    if misshapen:
        raise CheckpointError(
            f'{source}: {_listed(misshapen, "; ")}; the checkpoint was written for another model.'
        )


def _listed(items: Sequence[str], separator: str = ', ', shown: int = 5) -> str:
    """The first `shown` items, and how many more there are."""
    more = f' (and {len(items) - shown} more)' if len(items) > shown else ''
    return separator.join(items[:shown]) + more


def _shapes_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {
        jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
        for path, leaf in leaves
    }


# ---------------------------------------------------------------------------------------------
# Training checkpoints: one Orbax step directory per saved step under `<workdir>/checkpoints`,
# holding `variables` and `metadata` (so `load_variables` reads it) plus the optimiser state and
# the loop's own state. The latest `keep` steps are kept, plus the best by validation accuracy.

CHECKPOINTS_SUBDIR = 'checkpoints'
OPT_STATE = 'opt_state'
LOOP_STATE = 'loop_state'
TRAINING_ITEMS = (VARIABLES, METADATA, OPT_STATE, LOOP_STATE)
BEST_METRIC = 'val_accuracy'  # What 'best' ranks by: validation clip accuracy.
CHECKPOINT_WHICH = ('latest', 'best')


def _best_metric(metrics: dict[str, float]) -> float:
    """The ranking value; checkpoints saved between validations rank below every validated one."""
    return metrics.get(BEST_METRIC, -np.inf)


def checkpoints_directory(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINTS_SUBDIR)


def create_manager(workdir: str, *, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    """The Orbax manager of a workdir's training checkpoints (asynchronous, atomic saves)."""
    if keep < 1:
        raise ValueError(f'config.checkpoints_to_keep={keep} must be at least 1.')
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        best_fn=_best_metric,
        best_mode='max',
        preservation_policy=policies.AnyPreservationPolicy(
            [
                policies.LatestN(keep),
                policies.BestN(
                    get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False
                ),
            ]
        ),
        read_only=read_only,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
    )
    return ocp.CheckpointManager(
        checkpoints_directory(workdir), item_names=TRAINING_ITEMS, options=options
    )


def save_training_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    *,
    variables: Any,
    opt_state: Any,
    metadata: dict[str, Any],
    loop_state: dict[str, Any],
    metrics: dict[str, float] | None = None,
) -> None:
    """Starts writing a step directory; the write completes in the background.

    The arrays are copied to the host first, so the caller may donate its device buffers to
    the next step at once. `metrics` (validation results) rank the checkpoint for 'best'.
    """
    host_variables, host_opt_state = jax.tree.map(
        np.asarray, jax.device_get((variables, opt_state))
    )
    manager.save(
        step,
        args=ocp.args.Composite(
            **{
                VARIABLES: ocp.args.StandardSave(host_variables),
                METADATA: ocp.args.JsonSave(metadata),
                OPT_STATE: ocp.args.StandardSave(host_opt_state),
                LOOP_STATE: ocp.args.JsonSave(loop_state),
            }
        ),
        metrics=dict(metrics or {}),
        force=True,
    )


def restore_training_checkpoint(
    manager: ocp.CheckpointManager,
    *,
    variables: Any,
    opt_state: Any,
    check_metadata: Callable[[dict[str, Any]], None],
) -> tuple[int, Any, Any, dict[str, Any], dict[str, Any]] | None:
    """The newest readable checkpoint as (step, variables, opt_state, metadata, loop_state).

    `variables` and `opt_state` are host templates giving the structure, shapes and dtypes.
    `check_metadata` raises (a `CheckpointError`, which propagates) when the checkpoint belongs
    to another run. A checkpoint that cannot be read is reported with its path and the reason,
    moved aside to `<step>.unreadable` (so that training can write that step again) and the
    previous one is tried. Returns None when there is no checkpoint.
    """
    for step in sorted(manager.all_steps(), reverse=True):
        path = os.path.join(str(manager.directory), str(step))
        try:
            metadata = dict(
                manager.restore(
                    step, args=ocp.args.Composite(**{METADATA: ocp.args.JsonRestore()})
                )[METADATA]
            )
        except Exception as error:  # Any failure to read makes it unusable.
            _set_aside_unreadable(manager, step, path, error)
            continue
        check_metadata(metadata)
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    **{
                        VARIABLES: ocp.args.StandardRestore(_as_host_arrays(variables)),
                        OPT_STATE: ocp.args.StandardRestore(_as_host_arrays(opt_state)),
                        LOOP_STATE: ocp.args.JsonRestore(),
                    }
                ),
            )
        except Exception as error:
            _set_aside_unreadable(manager, step, path, error)
            continue
        return (
            step,
            restored[VARIABLES],
            restored[OPT_STATE],
            metadata,
            dict(restored[LOOP_STATE]),
        )
    return None


def _as_host_arrays(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _set_aside_unreadable(
    manager: ocp.CheckpointManager, step: int, path: str, error: Exception
) -> None:
    reason = f'{type(error).__name__}: {error}'.splitlines()[0]
    aside = f'{path}.unreadable'
    logger.error(
        'Checkpoint %s cannot be read (%s); moving it to %s and using the previous one.',
        path,
        reason,
        aside,
    )
    if jax.process_index() == 0:
        os.replace(path, aside)
    multihost_utils.sync_global_devices(f'r3d_jax set aside checkpoint {step}')
    manager.reload()


def find_checkpoint(workdir: str, which: str = 'latest') -> str:
    """The step directory of a workdir's 'latest' or 'best' checkpoint, or the path `which`.

    'best' is the checkpoint with the highest validation accuracy. The result can be passed to
    `load_variables`.
    """
    if which not in CHECKPOINT_WHICH:
        path = os.path.abspath(which)
        if not all(os.path.isdir(os.path.join(path, item)) for item in (VARIABLES, METADATA)):
            raise CheckpointError(
                f'{path} is not an r3d-jax checkpoint directory (it needs the items '
                f"{VARIABLES!r} and {METADATA!r}); pass 'latest', 'best' or a step directory."
            )
        return path
    directory = checkpoints_directory(workdir)
    none_yet = CheckpointError(f'No checkpoints in {directory}; train with --workdir={workdir}.')
    if not os.path.isdir(directory):
        raise none_yet
    manager = create_manager(workdir, keep=1, read_only=True)
    try:
        if which == 'latest':
            step = manager.latest_step()
        else:
            step = manager.best_step()
            if step is not None and BEST_METRIC not in (manager.metrics(step) or {}):
                raise CheckpointError(
                    f'No checkpoint in {directory} carries a validation accuracy '
                    "(config.eval_every_epochs was 0?); use 'latest'."
                )
    finally:
        manager.close()
    if step is None:
        raise none_yet
    return os.path.join(directory, str(step))


def resolve_checkpoint(reference: str) -> str:
    """The checkpoint directory `reference` names: a directory, or `<workdir>:best` /
    `<workdir>:latest` for a training run's best or latest checkpoint."""
    workdir, separator, which = reference.rpartition(':')
    if separator and which in CHECKPOINT_WHICH:
        return find_checkpoint(workdir, which)
    return find_checkpoint('', reference)
