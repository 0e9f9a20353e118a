"""Classifies video files with a checkpoint: top classes and probabilities per file.

    python predict.py --checkpoint=workdirs/r18_ucf101/checkpoints/12345 \
        [--top_k=5] [--json_out=predictions.json] video1.avi video2.mp4 ...

Any container and codec PyAV reads works. Class names and preprocessing come from the
checkpoint's metadata; no dataset is needed. Everything it runs lives in `r3d_jax.predict`.
"""

import json
import sys

from absl import app, flags

from r3d_jax import checkpoints, predict

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Checkpoint directory.')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'How many classes to show per video.', lower_bound=1)
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write the predictions to this JSON file.')
flags.mark_flag_as_required('checkpoint')


def main(argv: list[str]) -> None:
    paths = argv[1:]
    if not paths:
        raise app.UsageError('Name at least one video file.')
    try:
        classifier = predict.load_classifier(_CHECKPOINT.value)
        predictions = [predict.predict_video(classifier, path, _TOP_K.value) for path in paths]
    except (checkpoints.CheckpointError, predict.VideoReadError) as error:
        sys.exit(f'error: {error}')
    print(predict.format_predictions(predictions))
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, 'w') as file:
            json.dump([p.to_json() for p in predictions], file, indent=2)


if __name__ == '__main__':
    app.run(main)
