"""Evaluates a checkpoint on the test split: the paper's video accuracy, and clip accuracy.

    r3d-eval --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101 \
        [--checkpoint=latest|best|PATH] [--mode=video|clip|both]
    python eval.py ...  # The same, from a checkout.

PATH may be any checkpoint directory, e.g. one written by `r3d-convert`. Prints a table to
stdout, and writes `eval_<mode>.json`, `confusion_<mode>.png` and TensorBoard data to the
workdir; `<workdir>/logs/eval.log` holds every log line (`--verbose` shows them all in the
terminal). Everything it runs lives in `r3d_jax.evaluation`.
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

from r3d_jax import backends, console
from r3d_jax.cli import common

FLAGS = flags.FLAGS


def define_flags() -> None:
    config_flags.DEFINE_config_file('config', None, 'Config file (as for training).')
    flags.DEFINE_string('workdir', None, 'Directory with the training checkpoints.')
    flags.DEFINE_string(
        'checkpoint', 'latest', "'latest', 'best' (by validation accuracy) or a checkpoint dir."
    )
    flags.DEFINE_enum(
        'mode',
        'video',
        ['video', 'clip', 'both'],
        "'video': the paper's protocol; 'clip': the per-epoch validation's clips; 'both'.",
    )
    common.define_verbose_flag('<workdir>/logs/eval.log')
    flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    workdir = FLAGS.workdir
    log_file = common.log_file(workdir, 'eval')
    console.setup_logging(log_file, FLAGS.verbose)
    console.import_tensorflow()  # First, so that its start-up notices go to the log.

    from r3d_jax import checkpoints, evaluation
    from r3d_jax.data import input_pipeline, ucf101

    devices = backends.jax_devices()
    console.note(f'Devices: {devices}')
    modes = evaluation.EVAL_MODES if FLAGS.mode == 'both' else (FLAGS.mode,)
    console.phase(f'Evaluating checkpoint {FLAGS.checkpoint!r} of {workdir}: {", ".join(modes)}')
    with common.errors_without_traceback(
        checkpoints.CheckpointError,
        evaluation.EvaluationError,
        ucf101.DatasetNotBuiltError,
        input_pipeline.InputPipelineError,
    ):
        evaluation.evaluate_checkpoint(
            FLAGS.config, workdir, checkpoint=FLAGS.checkpoint, modes=modes
        )
    rows = []
    for mode in modes:
        rows += [
            (f'{mode} report', os.path.join(workdir, f'eval_{mode}.json')),
            (f'{mode} confusion figure', os.path.join(workdir, f'confusion_{mode}.png')),
        ]
    rows = [(label, common.shown_path(path)) for label, path in rows]
    rows += common.closing_rows(workdir, log_file, devices)
    print(console.summary_block(f'Evaluation of {workdir} written', rows), flush=True)


def run() -> None:
    """The `r3d-eval` command."""
    common.start(__doc__, main, define_flags)
