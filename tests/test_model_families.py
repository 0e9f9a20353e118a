"""Every family of the registry: depths, parameter counts, layouts, work, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r3d_jax import defaults
from r3d_jax.models import ARCHITECTURES, create_model, expected_variables, upgrade_model_config
from r3d_jax.models.flops import forward_macs_per_clip
from r3d_jax.models.layers import classifier_head

torch = pytest.importorskip('torch')
torch_layouts = pytest.importorskip('r3d_jax.models.torch_layouts')

EVERY_MODEL = [(arch, depth) for arch, family in ARCHITECTURES.items() for depth in family.depths]
# Shapes do not depend on the clip size; this one suits every layout (DenseNet needs 16x32x32).
SHAPE_CLIP = (1, 16, 32, 32, 3)


def make_config(arch, depth, num_classes=7, **model_fields):
    config = defaults.get_config()
    config.model.update(arch=arch, depth=depth, num_classes=num_classes, dtype='float32')
    config.model.update(model_fields)
    return config


def count_parameters(params):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def torch_parameter_count(model_config):
    with torch.device('meta'):  # Shapes only: nothing is allocated or initialised.
        model = torch_layouts.from_config(model_config)
    return sum(parameter.numel() for parameter in model.parameters())


def output_and_variables(config, clip_shape=SHAPE_CLIP):
    """Shapes of the logits and of the variables, from one trace and no computation."""
    model = create_model(config)
    clips = jax.ShapeDtypeStruct(clip_shape, jnp.uint8)
    return jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x, train=False), clips
    )


@pytest.mark.parametrize(
    'arch, depth, shortcut',
    [(arch, depth, 'B') for arch, depth in EVERY_MODEL]
    + [('resnet', 18, 'A'), ('resnet', 34, 'A'), ('resnet', 50, 'A'), ('preresnet', 18, 'A')],
)
def test_every_model_gives_float32_logits_and_its_pytorch_layouts_parameter_count(
    arch, depth, shortcut
):
    config = make_config(arch, depth, shortcut=shortcut)
    logits, variables = output_and_variables(config)
    assert logits.shape == (1, 7) and logits.dtype == jnp.float32
    assert count_parameters(variables['params']) == torch_parameter_count(config.model)


@pytest.mark.parametrize(
    'arch, parameters, gmac',
    # torchvision's published figures for its Kinetics-400 models (16x112x112 clips; its
    # "GFLOPS" count multiply-adds).
    [('r3d', 33_371_472, 40.70), ('mc3', 11_695_440, 43.34), ('r2plus1d', 31_505_325, 40.52)],
)
def test_torchvision_models_have_torchvisions_published_size_and_work(arch, parameters, gmac):
    config = make_config(arch, 18, num_classes=400)
    model = create_model(config)
    assert count_parameters(expected_variables(model, SHAPE_CLIP)['params']) == parameters
    assert round(forward_macs_per_clip(model, 16, 112) / 1e9, 2) == gmac


def test_flop_counter_gives_resnet18_its_8_31_gmac_per_clip():
    config = make_config('resnet', 18, num_classes=101)
    macs = forward_macs_per_clip(create_model(config), 16, 112)
    assert macs == pytest.approx(8.31e9, rel=0.005)


def stage_outputs(config, clip_shape, names):
    """Output shapes [T, H, W, C] of the top-level modules `names`, without computing."""
    model = create_model(config)
    variables = expected_variables(model, clip_shape)
    _, state = jax.eval_shape(
        lambda v: model.apply(
            v, jnp.zeros(clip_shape, jnp.uint8), train=False, capture_intermediates=True
        ),
        variables,
    )
    return [state['intermediates'][name]['__call__'][0].shape[1:] for name in names]


def test_mc3_convolves_only_space_after_its_first_stage():
    names = ['layer1_1', 'layer2_1', 'layer3_1', 'layer4_1']
    mc3 = stage_outputs(make_config('mc3', 18), (1, 16, 112, 112, 3), names)
    r3d = stage_outputs(make_config('r3d', 18), (1, 16, 112, 112, 3), names)
    assert [shape[0] for shape in mc3] == [16, 16, 16, 16]
    assert [shape[0] for shape in r3d] == [16, 8, 4, 2]
    assert [shape[1:] for shape in mc3] == [shape[1:] for shape in r3d]
    params = expected_variables(create_model(make_config('mc3', 18)), SHAPE_CLIP)['params']
    assert params['layer1_0']['conv1']['kernel'].shape == (3, 3, 3, 64, 64)
    assert params['layer2_0']['conv1']['kernel'].shape == (1, 3, 3, 64, 128)
    assert params['layer2_0']['downsample']['conv']['kernel'].shape == (1, 1, 1, 64, 128)


def test_r2plus1d_splits_every_3d_conv_with_torchvisions_mid_widths():
    params = expected_variables(create_model(make_config('r2plus1d', 18)), SHAPE_CLIP)['params']
    stem = params['conv1']
    assert stem['spatial']['kernel'].shape == (1, 7, 7, 3, 45)
    assert stem['temporal']['kernel'].shape == (3, 1, 1, 45, 64)
    # (in * out * 27) // (in * 9 + 3 * out), from the block's input and output widths, for both
    # of its convs: 64 -> 64 gives 144; the first block of stage 2, 64 -> 128, gives 230.
    first = params['layer1_0']['conv1']
    assert first['spatial']['kernel'].shape == (1, 3, 3, 64, 144)
    assert first['temporal']['kernel'].shape == (3, 1, 1, 144, 64)
    assert params['layer2_0']['conv1']['spatial']['kernel'].shape == (1, 3, 3, 64, 230)
    assert params['layer2_0']['conv2']['spatial']['kernel'].shape == (1, 3, 3, 128, 230)
    assert params['layer2_1']['conv1']['spatial']['kernel'].shape == (1, 3, 3, 128, 288)


def test_resnext_groups_its_3x3x3_convs_and_wide_resnet_widens_its_bottlenecks():
    resnext = expected_variables(create_model(make_config('resnext', 101)), SHAPE_CLIP)
    block = resnext['params']['layer1_0']
    assert block['conv1']['kernel'].shape == (1, 1, 1, 64, 128)
    assert block['conv2']['kernel'].shape == (3, 3, 3, 4, 128)  # 32 groups of 4 channels.
    assert block['conv3']['kernel'].shape == (1, 1, 1, 128, 256)
    assert resnext['params']['fc']['kernel'].shape == (2048, 7)
    wide = expected_variables(create_model(make_config('wideresnet', 50)), SHAPE_CLIP)
    block = wide['params']['layer4_0']
    assert block['conv2']['kernel'].shape == (3, 3, 3, 1024, 1024)
    assert block['conv3']['kernel'].shape == (1, 1, 1, 1024, 2048)
    assert wide['params']['conv1']['kernel'].shape == (7, 7, 7, 3, 64)


def test_pre_activation_blocks_normalise_their_input_and_nothing_follows_the_last_stage():
    params = expected_variables(create_model(make_config('preresnet', 50)), SHAPE_CLIP)['params']
    assert params['layer2_0']['bn1']['scale'].shape == (256,)  # The block's input.
    assert params['layer2_0']['bn3']['scale'].shape == (128,)
    assert set(params['layer2_0']['downsample']) == {'conv', 'bn'}
    assert set(params) == {'conv1', 'bn1', 'fc'} | {
        f'layer{stage}_{index}' for stage, n in enumerate((3, 4, 6, 3), 1) for index in range(n)
    }


def test_densenet_has_the_reference_modules_and_feature_maps():
    config = make_config('densenet', 121)
    params = expected_variables(create_model(config), SHAPE_CLIP)['params']
    assert set(params) == {'conv0', 'norm0', 'norm5', 'classifier'} | {
        f'denseblock{i}' for i in range(1, 5)
    } | {f'transition{i}' for i in range(1, 4)}
    assert len(params['denseblock3']) == 24
    assert params['denseblock1']['denselayer6']['conv1']['kernel'].shape == (1, 1, 1, 224, 128)
    assert params['transition3']['conv']['kernel'].shape == (1, 1, 1, 1024, 512)
    names = ['transition1', 'transition2', 'transition3', 'denseblock4']
    shapes = stage_outputs(config, (1, 16, 112, 112, 3), names)
    assert shapes == [(4, 14, 14, 128), (2, 7, 7, 256), (1, 3, 3, 512), (1, 3, 3, 1024)]


def test_densenet_says_when_a_clip_is_too_small_for_its_transitions():
    with pytest.raises(ValueError, match=r'transition3: the feature map .* too small'):
        output_and_variables(make_config('densenet', 121), (1, 8, 32, 32, 3))


@pytest.mark.parametrize('arch, torchvision_init', [('mc3', True), ('resnet', False)])
def test_torchvision_models_initialise_their_classifier_as_torchvision_does(arch, torchvision_init):
    model = create_model(make_config(arch, 18, num_classes=400))
    head = classifier_head(400, 512, model.head_init)
    fc = head.init(jax.random.key(0), jnp.zeros((1, 512)))['params']
    kernel = np.asarray(fc['kernel'])
    if torchvision_init:  # N(0, 0.01), zero bias.
        np.testing.assert_allclose(kernel.std(), 0.01, rtol=0.05)
        np.testing.assert_array_equal(fc['bias'], 0.0)
    else:  # PyTorch's nn.Linear: U(+-1/sqrt(512)).
        np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(512) / np.sqrt(3), rtol=0.05)


@pytest.mark.parametrize(
    'fields, message',
    [
        ({'arch': 'vgg'}, r"config\.model\.arch='vgg' is not one of \('resnet', 'preresnet'"),
        (
            {'arch': 'resnext', 'depth': 18},
            r"config\.model\.depth=18 is not one of \(50, 101, 152\) for "
            r"config\.model\.arch='resnext'; the models are resnet-10/18/34/50/101/152/200, .*"
            r'densenet-121/169/201/264',
        ),
        ({'arch': 'preresnet', 'depth': 10}, r'config\.model\.depth=10 is not one of \(18, 34'),
        ({'arch': 'resnext', 'depth': 50, 'cardinality': 0}, r'cardinality=0 must be a positive'),
        ({'arch': 'densenet', 'depth': 121, 'growth_rate': 0}, r'growth_rate=0 must be a positive'),
    ],
)
def test_unknown_architectures_are_config_errors_listing_the_valid_ones(fields, message):
    config = defaults.get_config()
    config.model.update(fields)
    with pytest.raises(defaults.ConfigError, match=message):
        create_model(config)


def test_the_retired_stem_field_points_to_arch():
    assert defaults.unknown_fields(['config.model.stem']) == [
        "config.model.stem (replaced by config.model.arch ('r3d' is the former "
        "stem='torchvision'))"
    ]


@pytest.mark.parametrize('stem, arch', [('reference', 'resnet'), ('torchvision', 'r3d')])
def test_model_metadata_written_before_arch_existed_is_read_as_its_architecture(stem, arch):
    written = defaults.get_config().model.to_dict()
    del written['arch'], written['widen_factor'], written['cardinality']
    written.update(stem=stem, depth=34, shortcut='A')
    expected = {**defaults.get_config().model.to_dict(), 'arch': arch, 'depth': 34}
    assert upgrade_model_config(written) == {**expected, 'shortcut': 'A'}
