"""PyTorch checkpoints in and out: reading files, checking names and shapes, exporting back."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

from r3d_jax import checkpoints, defaults
from r3d_jax.convert_torch import (
    TorchConversionError,
    flax_to_torch_state_dict,
    load_torch_state_dict,
    torch_to_flax_variables,
)
from r3d_jax.models import ARCHITECTURES, torch_layouts

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP_SHAPE = (2, 8, 32, 32, 3)


def make_config(depth=18, shortcut='B', arch='resnet', num_classes=5, **model_fields):
    config = defaults.get_config()
    config.model.update(
        arch=arch, depth=depth, shortcut=shortcut, num_classes=num_classes, dtype='float32'
    )
    config.model.update(model_fields)
    return config


def random_torch_model(config, seed=0, **layout_options):
    """The PyTorch layout of `config` with random weights and random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = torch_layouts.from_config(config.model, **layout_options)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def state_dict_of(arch, depth, **model_fields):
    """A state_dict of the PyTorch layout, uninitialised (only names and shapes matter)."""
    config = make_config(depth, arch=arch, num_classes=400, **model_fields)
    with torch.device('meta'):
        model = torch_layouts.from_config(config.model)
    return model.to_empty(device='cpu').state_dict()


@pytest.fixture(scope='module')
def resnet10_state_dict():
    return random_torch_model(make_config(10)).state_dict()


def test_truncated_file_is_reported_with_its_name(tmp_path, resnet10_state_dict):
    path = tmp_path / 'truncated.pth'
    torch.save(resnet10_state_dict, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchConversionError, match=r'truncated\.pth could not be read'):
        load_torch_state_dict(str(path))


def test_missing_file_is_reported_with_its_name(tmp_path):
    with pytest.raises(TorchConversionError, match=r'absent\.pth does not exist'):
        load_torch_state_dict(str(tmp_path / 'absent.pth'))


def test_file_without_state_dict_is_rejected(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'epoch': 3, 'arch': 'resnet-18'}, path)
    with pytest.raises(TorchConversionError, match='neither a state_dict'):
        load_torch_state_dict(str(path))


def test_reference_checkpoint_file_with_module_prefix_and_old_batch_norm_loads(
    tmp_path, resnet10_state_dict
):
    """A DataParallel checkpoint of the reference, saved (in PyTorch's legacy file format)
    before num_batches_tracked existed."""
    old_names = {
        f'module.{key}': value
        for key, value in resnet10_state_dict.items()
        if not key.endswith('num_batches_tracked')
    }
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    path = tmp_path / 'save_200.pth'
    checkpoint = {'epoch': 200, 'arch': 'resnet-10', 'state_dict': old_names}
    torch.save(
        {**checkpoint, 'optimizer': optimizer.state_dict()},
        path,
        _use_new_zipfile_serialization=False,
    )

    loaded = load_torch_state_dict(str(path))
    config = make_config(10)
    variables, report = torch_to_flax_variables(loaded, config)
    direct, _ = torch_to_flax_variables(resnet10_state_dict, config)

    assert not any(key.startswith('module.') for key in loaded)
    assert report.ignored_counters == 0
    jax.tree.map(np.testing.assert_array_equal, variables, direct)


def test_conv_and_fc_layouts_are_transposed(resnet10_state_dict):
    variables, report = torch_to_flax_variables(resnet10_state_dict, make_config(10))
    np.testing.assert_array_equal(
        variables['params']['conv1']['kernel'],
        resnet10_state_dict['conv1.weight'].numpy().transpose(2, 3, 4, 1, 0),
    )
    np.testing.assert_array_equal(
        variables['params']['fc']['kernel'], resnet10_state_dict['fc.weight'].numpy().T
    )
    np.testing.assert_array_equal(
        variables['batch_stats']['layer2_0']['bn1']['var'],
        resnet10_state_dict['layer2.0.bn1.running_var'].numpy(),
    )
    assert report.ignored_counters == sum(
        key.endswith('num_batches_tracked') for key in resnet10_state_dict
    )


def test_checkpoint_of_another_depth_names_the_depth(resnet10_state_dict):
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(resnet10_state_dict, make_config(18))
    message = str(error.value)
    assert 'missing keys' in message and 'layer1.1.conv1.weight' in message
    assert 'looks like a ResNet-10 checkpoint' in message
    assert 'config.model.depth=10' in message


def test_shortcut_b_checkpoint_for_shortcut_a_model_says_shortcut_b(resnet10_state_dict):
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(resnet10_state_dict, make_config(10, 'A'))
    message = str(error.value)
    assert 'unexpected keys' in message and 'layer2.0.downsample.0.weight' in message
    assert 'has downsample convs, so it uses shortcut B' in message


def test_shortcut_a_checkpoint_for_shortcut_b_model_says_shortcut_a():
    state_dict = random_torch_model(make_config(10, 'A')).state_dict()
    with pytest.raises(TorchConversionError, match='no downsample convs, so it uses shortcut A'):
        torch_to_flax_variables(state_dict, make_config(10, 'B'))


def test_missing_key_is_named(resnet10_state_dict):
    state_dict = dict(resnet10_state_dict)
    del state_dict['layer3.0.bn2.running_var']
    expected = r'missing keys \(1\): layer3\.0\.bn2\.running_var'
    with pytest.raises(TorchConversionError, match=expected):
        torch_to_flax_variables(state_dict, make_config(10))


def test_misshaped_stem_names_the_shape_and_the_fix():
    state_dict = random_torch_model(make_config(10, stem_temporal_kernel=3)).state_dict()
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(state_dict, make_config(10))
    message = str(error.value)
    assert 'conv1.weight (64, 3, 3, 7, 7) (expected (64, 3, 7, 7, 7))' in message
    assert 'config.model.stem_temporal_kernel=3' in message


def test_torchvision_names_for_reference_stem_say_which_stem(resnet10_state_dict):
    state_dict = random_torch_model(make_config(10, arch='r3d')).state_dict()
    with pytest.raises(TorchConversionError, match=r"set config\.model\.arch='r3d'"):
        torch_to_flax_variables(state_dict, make_config(10))


def test_class_count_mismatch_keeps_backbone_and_reinitialises_head(
    resnet10_state_dict, caplog
):
    config = make_config(10, num_classes=3)
    with caplog.at_level(logging.WARNING):
        variables, report = torch_to_flax_variables(
            resnet10_state_dict, config, rng=jax.random.key(7)
        )
    again, _ = torch_to_flax_variables(resnet10_state_dict, config, rng=jax.random.key(7))
    reference, _ = torch_to_flax_variables(resnet10_state_dict, make_config(10))

    assert report.head_reinitialised and report.checkpoint_num_classes == 5
    assert 'initialised a new fc head' in caplog.text
    assert variables['params']['fc']['kernel'].shape == (512, 3)
    bound = 1 / np.sqrt(512)
    assert np.abs(variables['params']['fc']['kernel']).max() <= bound
    jax.tree.map(np.testing.assert_array_equal, variables['params']['fc'], again['params']['fc'])
    del variables['params']['fc'], reference['params']['fc']
    jax.tree.map(np.testing.assert_array_equal, variables, reference)


def test_command_line_writes_a_checkpoint_that_loads_back(tmp_path, resnet10_state_dict):
    source = tmp_path / 'resnet10.pth'
    torch.save({'epoch': 1, 'arch': 'resnet-10', 'state_dict': resnet10_state_dict}, source)
    output = tmp_path / 'converted'
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO_ROOT)
    env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
    completed = subprocess.run(
        [
            sys.executable,
            '-m',
            'r3d_jax.convert_torch',
            f'--checkpoint={source}',
            f'--config={os.path.join(REPO_ROOT, "configs", "default.py")}',
            '--config.model.depth=10',
            '--config.model.num_classes=5',
            f'--output={output}',
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    variables, metadata = checkpoints.load_variables(str(output))
    expected, _ = torch_to_flax_variables(resnet10_state_dict, make_config(10))
    jax.tree.map(np.testing.assert_array_equal, variables, expected)
    assert metadata['model']['depth'] == 10 and metadata['model']['num_classes'] == 5
    assert metadata['input']['mean'] == list(defaults.REFERENCE_MEAN)
    assert metadata['class_names'] is None
    assert metadata['source'] == str(source)
    assert metadata['conversion']['layout'] == 'reference'


# ---------------------------------------------------------------------------------------------
# Every family: which file does not fit, and what it is instead.


WIDE_1 = {'widen_factor': 1}


@pytest.mark.parametrize(
    'file_model, config_model, says',
    [
        (('resnext', 101), ('resnet', 101), 'ResNeXt-101 checkpoint (bottleneck blocks'),
        (('resnet', 50), ('resnext', 50), 'ResNet-50 checkpoint (bottleneck blocks [3, 4, 6, 3]'),
        (('densenet', 121), ('densenet', 169), 'DenseNet-121 checkpoint (dense layers [6, 12, 24'),
        (('resnet', 18), ('r3d', 18), 'ResNet-18 checkpoint (basic blocks [2, 2, 2, 2]'),
        (('r3d', 18), ('resnet', 18), 'torchvision r3d_18 checkpoint (basic blocks'),
        (('mc3', 18), ('r3d', 18), 'torchvision mc3_18 checkpoint'),
        (('r2plus1d', 18), ('r3d', 18), 'torchvision r2plus1d_18 checkpoint'),
        (('preresnet', 200), ('resnet', 200), 'pre-activation ResNet-200 checkpoint'),
        (('wideresnet', 50, WIDE_1), ('resnet', 50), 'Wide ResNet-50 checkpoint (bottleneck'),
    ],
)
def test_a_checkpoint_of_another_family_or_depth_names_what_it_holds(
    file_model, config_model, says
):
    file_arch, file_depth, *file_fields = file_model
    arch, depth = config_model
    state_dict = state_dict_of(file_arch, file_depth, **(file_fields[0] if file_fields else {}))
    with pytest.raises(TorchConversionError) as error:
        torch_to_flax_variables(state_dict, make_config(depth, arch=arch))
    message = str(error.value)
    family = ARCHITECTURES[arch]
    assert f'a {family.name(depth)}.' in message.splitlines()[0]
    assert f'the file looks like a {says}' in message
    assert f'config.model.arch={file_arch!r}' in message or file_arch == arch
    assert f'config.model.depth={file_depth}' in message or file_depth == depth
    if file_arch == 'resnext':
        assert 'cardinality 32, shortcut B); set' in message
    if file_arch == 'wideresnet':
        assert 'widen_factor 1' in message and 'config.model.widen_factor=1' in message


@pytest.mark.parametrize(
    'arch, depth, head, std', [('densenet', 121, 'classifier', None), ('r2plus1d', 18, 'fc', 0.01)]
)
def test_every_family_keeps_its_backbone_and_gets_a_fresh_head_of_its_own(arch, depth, head, std):
    state_dict = state_dict_of(arch, depth)  # 400 classes.
    variables, report = torch_to_flax_variables(state_dict, make_config(depth, arch=arch))
    assert report.head_reinitialised and report.checkpoint_num_classes == 400
    kernel = np.asarray(variables['params'][head]['kernel'])
    assert kernel.shape == (state_dict[f'{head}.weight'].shape[1], 5)
    if std:  # torchvision's init; the reference's is PyTorch's nn.Linear default.
        np.testing.assert_allclose(kernel.std(), std, rtol=0.2)
        np.testing.assert_array_equal(variables['params'][head]['bias'], 0.0)


def test_a_resnext_with_another_cardinality_says_which():
    state_dict = state_dict_of('resnext', 50, cardinality=16)
    with pytest.raises(TorchConversionError, match=r'set config\.model\.cardinality=16'):
        torch_to_flax_variables(state_dict, make_config(50, arch='resnext'))


def test_a_file_of_no_known_layout_says_so():
    state_dict = {'encoder.weight': torch.zeros(3, 3)}
    with pytest.raises(TorchConversionError, match='match none of the layouts'):
        torch_to_flax_variables(state_dict, make_config(10))


# ---------------------------------------------------------------------------------------------
# Export: back to the reference's names and layouts, exactly.


EXPORTED_FAMILIES = [
    ('resnet', 18, {'shortcut': 'A'}),
    ('preresnet', 18, {}),
    ('wideresnet', 50, {'widen_factor': 1}),
    ('resnext', 50, {'cardinality': 8}),
    ('densenet', 121, {}),
    ('r3d', 18, {}),
    ('mc3', 18, {}),
    ('r2plus1d', 18, {}),
]


@pytest.mark.parametrize('arch, depth, model_fields', EXPORTED_FAMILIES)
def test_import_then_export_is_exact_and_loads_strictly_into_the_pytorch_layout(
    arch, depth, model_fields
):
    config = make_config(depth, arch=arch, **model_fields)
    original = random_torch_model(config).eval()
    variables, _ = torch_to_flax_variables(original.state_dict(), config)
    exported = flax_to_torch_state_dict(variables, config.model)

    # The reference's own layout: for DenseNet the released (dotted) names.
    target = torch_layouts.from_config(config.model, densenet_released_names=True).eval()
    target.load_state_dict(exported, strict=True)
    for key, value in target.state_dict().items():
        assert exported[key].dtype == value.dtype, key
    by_position = zip(original.state_dict().items(), target.state_dict().items(), strict=True)
    for (original_key, original_value), (key, value) in by_position:
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(value, original_value), (original_key, key)
    if arch == 'densenet':
        assert 'features.denseblock1.denselayer1.norm.1.weight' in exported
    clip_length = ARCHITECTURES[arch].smallest_clip[0]
    clips = torch.randn(1, 3, clip_length, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(clips), original(clips), rtol=0, atol=0)


def test_densenet_files_with_released_or_modern_layer_names_import_alike():
    config = make_config(121, arch='densenet')
    released = random_torch_model(config, seed=3, densenet_released_names=True).state_dict()
    modern = random_torch_model(config, seed=3).state_dict()
    assert 'features.denseblock4.denselayer16.conv.2.weight' in released
    assert 'features.denseblock4.denselayer16.conv2.weight' in modern
    from_released, _ = torch_to_flax_variables(released, config)
    from_modern, _ = torch_to_flax_variables(modern, config)
    jax.tree.map(np.testing.assert_array_equal, from_released, from_modern)


def test_export_of_a_checkpoint_written_before_arch_existed(tmp_path):
    """Metadata without `arch` and with stem='torchvision' is the r3d layout."""
    config = make_config(18, arch='r3d')
    original = random_torch_model(config)
    variables, _ = torch_to_flax_variables(original.state_dict(), config)
    legacy_model = {k: v for k, v in config.model.to_dict().items() if k != 'arch'}
    directory = str(tmp_path / 'legacy')
    checkpoints.save_variables(
        directory, variables, {'model': {**legacy_model, 'stem': 'torchvision'}, 'step': 7}
    )
    output = tmp_path / 'legacy.pth'

    from r3d_jax.convert_torch import export_checkpoint

    assert export_checkpoint(directory, str(output), module_prefix=True) == 'r3d_18'
    saved = torch.load(output, weights_only=True)
    assert saved['state_dict']['module.layer1.0.conv1.1.num_batches_tracked'] == 7
    state_dict = {key.removeprefix('module.'): v for key, v in saved['state_dict'].items()}
    torch_layouts.from_config(config.model).load_state_dict(state_dict, strict=True)
    with pytest.raises(TorchConversionError, match='already exists'):
        export_checkpoint(directory, str(output))


def run_converter(*flags):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO_ROOT)
    return subprocess.run(
        [sys.executable, '-m', 'r3d_jax.convert_torch', *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_command_line_exports_a_reference_checkpoint_file(tmp_path, resnet10_state_dict):
    directory = str(tmp_path / 'converted')
    config = make_config(10)
    variables, _ = torch_to_flax_variables(resnet10_state_dict, config)
    checkpoints.save_variables(directory, variables, {'model': config.model.to_dict()})
    output = tmp_path / 'resnet-10.pth'

    completed = run_converter('--to_torch', f'--checkpoint={directory}', f'--output={output}')

    assert completed.returncode == 0, completed.stderr[-3000:]
    saved = torch.load(output, weights_only=True)
    assert set(saved) == {'epoch', 'arch', 'state_dict', 'optimizer'}
    assert (saved['epoch'], saved['arch'], saved['optimizer']) == (0, 'resnet-10', None)
    model = torch_layouts.from_config(config.model)
    model.load_state_dict(saved['state_dict'], strict=True)
    for key, value in resnet10_state_dict.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(saved['state_dict'][key], value), key
    assert not os.path.exists(f'{output}.partial')


def test_command_line_errors_name_the_problem(tmp_path, resnet10_state_dict):
    source = tmp_path / 'resnet10.pth'
    torch.save({'epoch': 1, 'arch': 'resnet-10', 'state_dict': resnet10_state_dict}, source)
    completed = run_converter(
        f'--checkpoint={source}',
        f'--config={os.path.join(REPO_ROOT, "configs", "default.py")}',
        '--config.model.arch=resnext',
        '--config.model.depth=50',
        f'--output={tmp_path / "out"}',
    )
    assert completed.returncode == 1
    assert 'error: The PyTorch weights do not fit config.model' in completed.stderr
    assert 'the file looks like a ResNet-10' in completed.stderr
    assert not (tmp_path / 'out').exists()
