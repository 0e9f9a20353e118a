"""Evaluates a checkpoint on the test split: video accuracy by a protocol, and clip accuracy.

    python eval.py --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101 \
        [--checkpoint=latest|best|PATH] [--mode=video|multiview|clip|both|all]

Protocols: 'video' (the paper's: every non-overlapping clip, centre crop), 'multiview'
(`config.input.multiview_clips` clips x `multiview_crops` crops per video, 10 x 3 by default),
'clip' (the per-epoch validation's clips); 'both' runs clip and video, 'all' every protocol.
PATH may be any checkpoint directory, e.g. one written by `python -m r3d_jax.convert_torch`.
Prints a table per protocol (top-1, top-5, their mean, per-class accuracy), and writes
`eval_<mode>.json`, a confusion figure (or, beyond 101 classes, the top confusions) and
TensorBoard data to the workdir. Everything it runs lives in `r3d_jax.evaluation`.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from r3d_jax import checkpoints, evaluation
from r3d_jax.data import datasets, input_pipeline

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (as for train.py).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory with the training checkpoints.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', 'latest', "'latest', 'best' (by validation accuracy) or a checkpoint directory."
)
_MODE_CHOICES = {
    'video': ('video',),
    'multiview': ('multiview',),
    'clip': ('clip',),
    'both': ('clip', 'video'),
    'all': evaluation.EVAL_MODES,
}
_MODE = flags.DEFINE_enum(
    'mode',
    'video',
    list(_MODE_CHOICES),
    "'video': the paper's protocol; 'multiview': clips x crops per video; 'clip': the "
    "per-epoch validation's clips; 'both': clip and video; 'all': every protocol.",
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    modes = _MODE_CHOICES[_MODE.value]
    logging.info('Evaluating checkpoint %r of %s: %s.', _CHECKPOINT.value, _WORKDIR.value, modes)
    try:
        evaluation.evaluate_checkpoint(
            _CONFIG.value, _WORKDIR.value, checkpoint=_CHECKPOINT.value, modes=modes
        )
    except (
        checkpoints.CheckpointError,
        evaluation.EvaluationError,
        datasets.DatasetNotBuiltError,
        input_pipeline.InputPipelineError,
    ) as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    app.run(main)
