"""The exported classifier: same outputs as the live model, any batch, no model code needed."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from r3d_jax import checkpoints, defaults, export
from r3d_jax.models import create_model, init_variables

EXPORT_MODULE = export.__file__
CLIP_SHAPE = (4, 16, 16, 3)
CLASS_NAMES = ['MoveRight', 'MoveLeft', 'Expand']


def tiny_config():
    config = defaults.get_config()
    config.model.update(depth=10, num_classes=3, stem_temporal_kernel=3, dtype='float32')
    config.input.update(clip_length=4, crop_size=16)
    config.data.frame_short_side = 32
    return config


@pytest.fixture(scope='module')
def checkpoint_and_model(tmp_path_factory):
    """A checkpoint of a ResNet-10 whose BatchNorm statistics are not the trivial ones."""
    config = tiny_config()
    model = create_model(config)
    variables = init_variables(model, jax.random.key(0), (1, *CLIP_SHAPE))
    variables['batch_stats'] = jax.tree.map(
        lambda x: x + 0.1 * np.arange(x.size, dtype=np.float32).reshape(x.shape) % 1.0,
        variables['batch_stats'],
    )
    directory = str(tmp_path_factory.mktemp('checkpoint') / 'tiny')
    checkpoints.save_variables(
        directory,
        variables,
        {
            'model': config.model.to_dict(),
            'input': config.input.to_dict(),
            'data': {'frame_short_side': config.data.frame_short_side},
            'class_names': CLASS_NAMES,
        },
    )
    return directory, model, variables


@pytest.fixture(scope='module')
def export_dir(checkpoint_and_model, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('export') / 'classifier')
    export.export_checkpoint(checkpoint_and_model[0], directory)
    return directory


def live_probabilities(model, variables, clips):
    logits = model.apply(variables, clips, train=False)
    return np.asarray(jax.nn.softmax(logits, axis=-1))


@pytest.mark.parametrize('batch', [1, 3])
def test_exported_function_matches_the_live_model_for_any_batch(
    checkpoint_and_model, export_dir, batch
):
    _, model, variables = checkpoint_and_model
    clips = np.random.default_rng(batch).integers(0, 256, (batch, *CLIP_SHAPE), np.uint8)

    exported = export.load_exported(export_dir)

    np.testing.assert_allclose(
        exported(clips), live_probabilities(model, variables, clips), atol=1e-5
    )


def test_export_records_labels_preprocessing_and_input_shape(export_dir):
    exported = export.load_exported(export_dir)

    assert exported.class_names == CLASS_NAMES
    assert exported.metadata['clip_shape'] == list(CLIP_SHAPE)
    assert exported.metadata['input']['frame_short_side'] == 32
    assert exported.metadata['input']['mean'] == list(defaults.REFERENCE_MEAN)
    assert set(exported.exported.platforms) == {'cpu', 'cuda'}


def test_export_runs_with_jax_alone_in_a_fresh_process(export_dir, tmp_path):
    """Loads the module file on its own (no r3d_jax package, no flax) and classifies clips."""
    script = tmp_path / 'run_export.py'
    script.write_text(
        f"""
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location('standalone_export', {EXPORT_MODULE!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
classifier = module.load_exported({export_dir!r})
probabilities = classifier(np.zeros((2, *classifier.metadata['clip_shape']), np.uint8))
print(json.dumps({{
    'shape': list(probabilities.shape),
    'sums': probabilities.sum(axis=1).tolist(),
    'foreign_modules': sorted(m for m in ('r3d_jax', 'flax') if m in sys.modules),
}}))
"""
    )
    environment = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ''}

    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output['shape'] == [2, 3]
    np.testing.assert_allclose(output['sums'], [1.0, 1.0], atol=1e-5)
    assert output['foreign_modules'] == []


def test_export_refuses_to_overwrite_an_existing_directory(checkpoint_and_model, export_dir):
    with pytest.raises(FileExistsError, match='already exists'):
        export.export_checkpoint(checkpoint_and_model[0], export_dir)


def test_loading_an_incomplete_export_names_the_missing_file(tmp_path):
    (tmp_path / export.METADATA_FILE).write_text('{}')

    with pytest.raises(FileNotFoundError, match=export.EXPORTED_FILE):
        export.load_exported(str(tmp_path))
