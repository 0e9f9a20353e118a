"""Trains a 3D ResNet: flags, distributed set-up and the console around `training`.

    r3d-train --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101
    python train.py --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101  # A checkout.

Any config field can be overridden, e.g. `--config.batch_size=64`. Running the same command
again resumes from the workdir's latest checkpoint; SIGTERM or Ctrl-C saves one and stops (and
before training starts, stops cleanly). The terminal shows a line per phase, progress bars and
the periodic metrics, and at the end a summary with the accuracies and the paths of the report,
the best checkpoint, the log and TensorBoard's logs; `<workdir>/logs/train.log` holds every log
line, the libraries' too (`--verbose` shows them in the terminal as well).

Multi-process (one process per host, each feeding its local devices): pass
`--coordinator_address=host0:1234 --num_processes=N --process_id=i` (or set
JAX_COORDINATOR_ADDRESS), or `--distributed` where JAX detects the cluster (Slurm, Open MPI,
Cloud TPU).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from absl import app, flags
from ml_collections import config_flags

from r3d_jax import backends, console
from r3d_jax.cli import common

if TYPE_CHECKING:
    from r3d_jax.training import TrainingOutcome

# JAX, TensorFlow and the rest of the package are imported inside the functions that use them:
# the dataset build's worker processes are spawned, and import the launching script again.

FLAGS = flags.FLAGS
_OVERRIDE = re.compile(r'^--?(config\.[^=\s]+)')


def define_flags() -> None:
    flags.DEFINE_string('workdir', None, 'Directory for checkpoints, TensorBoard events, reports.')
    config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
    flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed from the cluster.')
    flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process).')
    flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
    flags.DEFINE_integer('process_id', None, 'Index of this process (multi-process runs).')
    common.define_verbose_flag('<workdir>/logs/train.log')
    flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with unknown `--config.*` fields named instead of a traceback."""
    try:
        return FLAGS(list(argv))
    except (AttributeError, KeyError):
        from r3d_jax import defaults

        overrides = [m.group(1) for arg in argv[1:] if (m := _OVERRIDE.match(arg))]
        unknown = defaults.unknown_fields(overrides) or overrides
        sys.exit(
            f'FATAL: unknown config field(s) on the command line: {", ".join(unknown)}. '
            'Every field is defined, with a comment, in r3d_jax/defaults.py.'
        )
    except flags.Error as error:
        sys.exit(f'FATAL Flags parsing error: {error}\nPass --helpshort or --helpfull for help.')


def initialize_distributed() -> None:
    """Joins a multi-process run when the flags or the environment describe one."""
    explicit = FLAGS.coordinator_address or FLAGS.num_processes or FLAGS.process_id is not None
    if not (FLAGS.distributed or explicit or 'JAX_COORDINATOR_ADDRESS' in os.environ):
        return
    import jax

    # The CPU backend needs a collectives implementation to span processes.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    started = time.monotonic()
    workdir = FLAGS.workdir
    log_file = common.log_file(workdir, 'train', FLAGS.process_id or 0)
    console.setup_logging(log_file, FLAGS.verbose)
    tf = console.import_tensorflow()  # First, so that its start-up notices go to the log.
    import jax

    from r3d_jax import checkpoints, defaults, evaluation, training
    from r3d_jax.data import datasets, input_pipeline, layouts

    # TensorFlow only feeds the input pipeline: keep it off the GPUs, which belong to JAX.
    tf.config.set_visible_devices([], 'GPU')
    initialize_distributed()
    if jax.process_index() != 0 and FLAGS.process_id is None:  # Learnt from the cluster.
        log_file = common.log_file(workdir, 'train', jax.process_index())
        console.setup_logging(log_file, FLAGS.verbose)
    devices = backends.jax_devices()
    console.note(f'Devices: {devices}')
    with common.errors_without_traceback(
        defaults.ConfigError,
        checkpoints.CheckpointError,
        training.TrainingDivergedError,
        evaluation.EvaluationError,
        datasets.DatasetNotBuiltError,
        layouts.SourceError,
        input_pipeline.InputPipelineError,
    ):
        outcome = training.train_and_evaluate(FLAGS.config, workdir)
    if outcome.stopped_by:
        console.note(
            f'Stopped by {outcome.stopped_by} at step {outcome.step} of {outcome.total_steps}. '
            'The checkpoint resumes there: run the same command again to continue.'
        )
        return
    best_checkpoint = _best_checkpoint(workdir)  # Every process: Orbax synchronises them.
    if jax.process_index() == 0:
        rows = summary_rows(
            outcome,
            workdir=workdir,
            log_file=log_file,
            best_checkpoint=best_checkpoint,
            total_seconds=time.monotonic() - started,
            devices=devices,
        )
        print(console.summary_block(f'Training finished: {workdir}', rows), flush=True)


def _best_checkpoint(workdir: str) -> tuple[str, str] | None:
    """('best checkpoint', path), or the latest one when no epoch was validated, or None."""
    from r3d_jax import checkpoints

    for which in ('best', 'latest'):
        try:
            return f'{which} checkpoint', checkpoints.find_checkpoint(workdir, which)
        except checkpoints.CheckpointError:
            continue
    return None


def _percent(fraction: float) -> str:
    return f'{100 * fraction:.2f} %'


def summary_rows(
    outcome: TrainingOutcome,
    *,
    workdir: str,
    log_file: str,
    best_checkpoint: tuple[str, str] | None,
    total_seconds: float,
    devices: str,
) -> list[tuple[str, str]]:
    """The closing summary of a finished run, row by row: figures, then where things are."""
    from r3d_jax import reports

    rows = []
    for index, (mode, result) in enumerate(outcome.final_results.items()):
        label = 'video' if index == 0 else mode  # The first protocol's rows head the block.
        rows += [
            (f'{label} top-1', f'{_percent(result.video_top1)}  ({result.protocol})'),
            (f'{label} top-5', _percent(result.video_top5)),
        ]
        if index == 0:
            clips = f'its {result.num_clips} clips scored one by one'
            rows += [
                ('mean class accuracy', _percent(result.mean_class_accuracy)),
                ('clip accuracy', f'{_percent(result.clip_top1)}  ({clips})'),
            ]
    if outcome.best_val_accuracy is not None:
        rows.append(('best validation', f'{_percent(outcome.best_val_accuracy)}  (clip accuracy)'))
    rows.append(
        (
            'training time',
            f'{console.format_duration(outcome.training_seconds)} for this run '
            f'({console.format_duration(total_seconds)} in all, step {outcome.step} of '
            f'{outcome.total_steps})',
        )
    )
    for index, (mode, result) in enumerate(outcome.final_results.items()):
        prefix = '' if index == 0 else f'{mode} '
        paths = reports.report_paths(workdir, mode, result.confusion_matrix.shape[0])
        rows += [
            (f'{prefix}report', common.shown_path(paths.report)),
            (f'{prefix}{paths.confusions_label}', common.shown_path(paths.confusions)),
        ]
    if best_checkpoint is not None:
        label, path = best_checkpoint
        rows.append((label, common.shown_path(path)))
    return rows + common.closing_rows(workdir, log_file, devices)


def run() -> None:
    """The `r3d-train` command."""
    common.start(__doc__, main, define_flags, flags_parser=parse_flags)
