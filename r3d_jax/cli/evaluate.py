"""Evaluates a checkpoint on the test split: the paper's video accuracy, and clip accuracy.

    r3d-eval --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101 \
        [--checkpoint=latest|best|PATH] [--mode=video|multiview|clip|both|all]
    python eval.py ...  # The same, from a checkout.

Protocols: 'video' (the paper's: every non-overlapping clip, centre crop), 'multiview'
(`config.input.multiview_clips` clips x `multiview_crops` crops per video, 10 x 3 by default),
'clip' (the per-epoch validation's clips); 'both' runs clip and video, 'all' every protocol.
PATH may be any checkpoint directory, e.g. one written by `r3d-convert`. Prints a table per
protocol to stdout (top-1, top-5, their mean, per-class accuracy), and writes
`eval_<mode>.json`, a confusion figure (or, beyond 101 classes, the top confusions) and
TensorBoard data to the workdir; `<workdir>/logs/eval.log` holds every log line (`--verbose`
shows them all in the terminal). Everything it runs lives in `r3d_jax.evaluation`.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from r3d_jax import backends, console
from r3d_jax.cli import common

FLAGS = flags.FLAGS
# --mode: the protocols each choice runs.
MODE_CHOICES = {
    'video': ('video',),
    'multiview': ('multiview',),
    'clip': ('clip',),
    'both': ('clip', 'video'),
    'all': ('clip', 'video', 'multiview'),
}


def define_flags() -> None:
    config_flags.DEFINE_config_file('config', None, 'Config file (as for training).')
    flags.DEFINE_string('workdir', None, 'Directory with the training checkpoints.')
    flags.DEFINE_string(
        'checkpoint', 'latest', "'latest', 'best' (by validation accuracy) or a checkpoint dir."
    )
    flags.DEFINE_enum(
        'mode',
        'video',
        list(MODE_CHOICES),
        "'video': the paper's protocol; 'multiview': clips x crops per video; 'clip': the "
        "per-epoch validation's clips; 'both': clip and video; 'all': every protocol.",
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

    from r3d_jax import checkpoints, evaluation, reports
    from r3d_jax.data import datasets, input_pipeline, layouts

    devices = backends.jax_devices()
    console.note(f'Devices: {devices}')
    modes = MODE_CHOICES[FLAGS.mode]
    console.phase(f'Evaluating checkpoint {FLAGS.checkpoint!r} of {workdir}: {", ".join(modes)}')
    with common.errors_without_traceback(
        checkpoints.CheckpointError,
        evaluation.EvaluationError,
        datasets.DatasetNotBuiltError,
        layouts.SourceError,
        input_pipeline.InputPipelineError,
    ):
        results = evaluation.evaluate_checkpoint(
            FLAGS.config, workdir, checkpoint=FLAGS.checkpoint, modes=modes
        )
    rows = []
    for mode, result in results.items():
        paths = reports.report_paths(workdir, mode, result.confusion_matrix.shape[0])
        rows += [
            (f'{mode} report', paths.report),
            (f'{mode} {paths.confusions_label}', paths.confusions),
        ]
    rows = [(label, common.shown_path(path)) for label, path in rows]
    rows += common.closing_rows(workdir, log_file, devices)
    print(console.summary_block(f'Evaluation of {workdir} written', rows), flush=True)


def run() -> None:
    """The `r3d-eval` command."""
    common.start(__doc__, main, define_flags)
