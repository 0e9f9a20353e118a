"""A classifier that runs without this package: `jax.export` of the forward pass, plus weights.

`python -m r3d_jax.export --checkpoint=DIR --output=OUT` writes to OUT:
- `inference.jax`: a serialised `jax.export.Exported` of `probabilities = f(weights, clips)`,
  lowered for CPU and CUDA;
- `weights.npz`: the list `weights` of float32 arrays, stored as `0`, `1`, ... in that order;
- `metadata.json`: `class_names`, `input` (the preprocessing below), `model` (the architecture),
  `clip_shape` and `platforms`.

Input format of `f`: `clips` is uint8 [batch, T, S, S, 3] with any batch size >= 1 (the
dimension is symbolic), RGB in [0, 255], where T = `input.clip_length` consecutive frames (every
`input.temporal_stride`-th frame; a video shorter than a clip is looped) and S = `input.crop_size`.
Frames are prepared as in evaluation: resized so that the short side is `input.frame_short_side`
(bilinear), then cropped to S x S at the centre (or at the other evaluation views). The
normalisation `(x * input.value_scale - input.mean) / input.std` happens inside `f`. The output
is float32 [batch, len(class_names)]: each clip's softmax probabilities; average them over the
clips of a video for the video's scores.

`load_exported(OUT)` rebuilds the classifier with only jax, numpy and json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

EXPORTED_FILE = 'inference.jax'
WEIGHTS_FILE = 'weights.npz'
METADATA_FILE = 'metadata.json'
PLATFORMS = ('cpu', 'cuda')


@dataclasses.dataclass(frozen=True)
class ExportedClassifier:
    """A loaded export: call it with uint8 clips [batch, T, S, S, 3] to get probabilities."""

    exported: jax.export.Exported
    weights: list[jax.Array]
    metadata: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return self.metadata['class_names']

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return np.asarray(self.exported.call(self.weights, jnp.asarray(clips, jnp.uint8)))


def load_exported(directory: str) -> ExportedClassifier:
    """Reads an export written by `export_classifier`; needs no model code."""
    paths = [os.path.join(directory, name) for name in (EXPORTED_FILE, WEIGHTS_FILE, METADATA_FILE)]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path} is missing; {directory} is not a complete export.')
    exported_path, weights_path, metadata_path = paths
    with open(exported_path, 'rb') as file:
        exported = jax.export.deserialize(bytearray(file.read()))
    with np.load(weights_path) as stored:
        weights = [jnp.asarray(stored[str(i)]) for i in range(len(stored.files))]
    with open(metadata_path) as file:
        metadata = json.load(file)
    return ExportedClassifier(exported, weights, metadata)


def export_classifier(
    model: Any,
    variables: Any,
    *,
    clip_shape: Sequence[int],
    metadata: dict[str, Any],
    output_dir: str,
    platforms: Sequence[str] = PLATFORMS,
) -> None:
    """Exports `model` with `variables` for clips of `clip_shape` [T, S, S, 3] to `output_dir`.

    The directory is written under a temporary name and renamed when complete, so a partial
    export never carries the final name.
    """
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir):
        raise FileExistsError(f'{output_dir} already exists; choose a new output directory.')
    weights, tree = jax.tree.flatten(jax.device_get(variables))

    def probabilities(weight_list: list[jax.Array], clips: jax.Array) -> jax.Array:
        logits = model.apply(jax.tree.unflatten(tree, weight_list), clips, train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    (batch,) = jax.export.symbolic_shape('batch')
    exported = jax.export.export(jax.jit(probabilities), platforms=tuple(platforms))(
        [jax.ShapeDtypeStruct(np.shape(w), np.float32) for w in weights],
        jax.ShapeDtypeStruct((batch, *clip_shape), jnp.uint8),
    )
    temporary = f'{output_dir}.partial'
    os.makedirs(temporary)
    with open(os.path.join(temporary, EXPORTED_FILE), 'wb') as file:
        file.write(exported.serialize())
    np.savez(
        os.path.join(temporary, WEIGHTS_FILE),
        **{str(i): np.asarray(w, np.float32) for i, w in enumerate(weights)},
    )
    with open(os.path.join(temporary, METADATA_FILE), 'w') as file:
        json.dump(
            {**metadata, 'clip_shape': list(clip_shape), 'platforms': list(platforms)},
            file,
            indent=2,
        )
    os.replace(temporary, output_dir)


def export_checkpoint(checkpoint_dir: str, output_dir: str) -> None:
    """Exports the classifier of an r3d-jax checkpoint, with its classes and preprocessing."""
    # Imported here so that this module, and `load_exported` with it, needs only jax and numpy.
    from r3d_jax import evaluation, predict

    classifier = predict.load_classifier(checkpoint_dir)
    config = classifier.config
    export_classifier(
        classifier.model,
        classifier.variables,
        clip_shape=evaluation.clip_shape(config)[1:],
        metadata={
            'class_names': classifier.class_names,
            'input': {**config.input.to_dict(), **config.data.to_dict()},
            'model': config.model.to_dict(),
            'checkpoint': os.path.abspath(checkpoint_dir),
        },
        output_dir=output_dir,
    )


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    checkpoint, output = flags.FLAGS.checkpoint, flags.FLAGS.output
    try:
        export_checkpoint(checkpoint, output)
    except (ValueError, OSError) as error:
        sys.exit(f'error: {error}')
    print(f'Exported {checkpoint} to {output}.')


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string('checkpoint', None, 'r3d-jax checkpoint directory.')
    flags.DEFINE_string('output', None, 'Directory to create for the export.')
    flags.mark_flags_as_required(['checkpoint', 'output'])


def run() -> None:
    """The `r3d-export` command (`python -m r3d_jax.export`)."""
    from r3d_jax.cli import common

    common.start(__doc__, main, _define_flags)


if __name__ == '__main__':
    run()
