"""Classifies video files with a checkpoint: top classes and probabilities per file.

    r3d-predict --checkpoint=workdirs/r18_ucf101/checkpoints/12345 \
        [--top_k=5] [--json_out=predictions.json] video1.avi video2.mp4 ...
    python predict.py ...  # The same, from a checkout.

Any container and codec PyAV reads works. Class names and preprocessing come from the
checkpoint's metadata; no dataset is needed. The predictions go to stdout, progress to stderr;
`--verbose` shows the libraries' log lines too. Everything it runs lives in `r3d_jax.predict`.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from r3d_jax import backends, console
from r3d_jax.cli import common

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string('checkpoint', None, 'Checkpoint directory.')
    flags.DEFINE_integer('top_k', 5, 'How many classes to show per video.', lower_bound=1)
    flags.DEFINE_string('json_out', None, 'Also write the predictions to this JSON file.')
    flags.DEFINE_bool('verbose', False, "Show every log line, the libraries' INFO lines too.")
    flags.mark_flag_as_required('checkpoint')


def main(argv: list[str]) -> None:
    paths = argv[1:]
    if not paths:
        raise app.UsageError('Name at least one video file.')
    console.setup_logging(None, FLAGS.verbose)
    console.import_tensorflow()  # First, so that its start-up notices stay off the terminal.

    from r3d_jax import checkpoints, predict

    console.note(f'Devices: {backends.jax_devices()}')
    console.phase(f'Classifying {len(paths)} video(s) with {FLAGS.checkpoint}')
    with common.errors_without_traceback(checkpoints.CheckpointError, predict.VideoReadError):
        classifier = predict.load_classifier(FLAGS.checkpoint)
        predictions = []
        with console.progress(total=len(paths), desc='videos', unit='video') as bar:
            for path in paths:
                predictions.append(predict.predict_video(classifier, path, FLAGS.top_k))
                bar.update()
    print(predict.format_predictions(predictions), flush=True)
    if FLAGS.json_out:
        temporary = f'{FLAGS.json_out}.tmp'  # Renamed when complete: never half a file.
        with open(temporary, 'w') as file:
            json.dump([p.to_json() for p in predictions], file, indent=2)
        os.replace(temporary, FLAGS.json_out)


def run() -> None:
    """The `r3d-predict` command."""
    common.start(__doc__, main, define_flags)
