"""Kernels placed in the step by the compiled module's text: convs by kind, fusions, sources."""

import pytest

from r3d_jax import profiling
from r3d_jax.profiling import Kernel

_PREFIX = 'jit(train_step)/'


def _instruction(name, shape_and_call, op_name='', extra=''):
    metadata = f', metadata={{op_name="{_PREFIX}{op_name}"{extra}}}' if op_name else ''
    return f'  %{name} = {shape_and_call}{metadata}'


_CONV_CALL = '(bf16[8,4,28,28,64]{4,3,2,1,0}, u8[0]{0}) custom-call(%p, %k), custom_call_target='
# A compiled module's text as XLA prints it for a GPU: cuDNN convs as custom calls, a fusion
# without metadata, the stack-frame tables (each parent printed as its id + 1, as jaxlib 0.10
# prints them: frame 4's parent is frame 2).
GPU_MODULE = '\n'.join([
    'HloModule jit_train_step, entry_computation_layout={(bf16[8,64]{1,0})->bf16[]}',
    '',
    'FileNames',
    '1 "/repo/benchmarks/train_step.py"',
    '2 "/repo/r3d_jax/steps.py"',
    '3 "/repo/r3d_jax/crop_resize.py"',
    '4 "/repo/r3d_jax/models/max_pool.py"',
    '',
    'FunctionNames',
    '1 "measure"',
    '2 "train_step"',
    '3 "CropResize.__call__"',
    '4 "_pool_forward"',
    '',
    'FileLocations',
    *(f'{i} {{file_name_id={i} function_name_id={i} line={i} end_line={i} column=1 '
      'end_column=2}' for i in range(1, 5)),
    '',
    'StackFrames',
    '1 {file_location_id=1 parent_frame_id=1}',
    '2 {file_location_id=2 parent_frame_id=2}',
    '3 {file_location_id=3 parent_frame_id=3}',
    '4 {file_location_id=4 parent_frame_id=3}',
    '',
    '%fused_computation.1 (param_0: bf16[8,64]) -> bf16[8,64] {',
    '  %param_0 = bf16[8,64]{1,0} parameter(0)',
    '  ROOT' + _instruction(
        'add.1', 'bf16[8,64]{1,0} add(%param_0, %param_0)',
        'transpose(jvp(ResNet3D))/layer2_0/bn1/add')[1:],
    '}',
    '',
    'ENTRY %main.2 (p: bf16[8,64], k: bf16[3,3,3,64,64]) -> bf16[] {',
    '  %p = bf16[8,64]{1,0} parameter(0)',
    _instruction('custom-call.1', _CONV_CALL + '"__cudnn$convForward"',
                 'jvp(ResNet3D)/layer1_0/conv1/conv_general_dilated'),
    _instruction('custom-call.2', _CONV_CALL + '"__cudnn$convBackwardInput"',
                 'transpose(jvp(ResNet3D))/layer1_0/conv2/conv_general_dilated'),
    _instruction('custom-call.3', _CONV_CALL + '"__cudnn$convBackwardFilter"',
                 'transpose(jvp(ResNet3D))/conv1/conv_general_dilated'),
    _instruction('custom-call.4', _CONV_CALL + '"__cudnn$convForward"',
                 'jvp(ResNet3D)/layer2_0/layer2_0.add_shortcut/downsample/conv/conv_general_dilated'),
    '  %loop_add_fusion = bf16[8,64]{1,0} fusion(%p), kind=kLoop, calls=%fused_computation.1',
    _instruction('transpose_copy_fusion.3',
                 'bf16[8,64]{1,0} fusion(%p), kind=kLoop, calls=%fused_computation.1',
                 'jvp(ResNet3D)/layer3_0/conv1/transpose'),
    _instruction('dot.5', 'f32[8,16,112]{2,1,0} dot(%p, %p), lhs_contracting_dims={1}',
                 'nhp,ntpwc->nthwc/dot_general', ' stack_frame_id=3'),
    _instruction('select.6', 'bf16[8,64]{1,0} select(%p, %p, %p)', 'jvp(ResNet3D)/select_n',
                 ' stack_frame_id=4'),
    _instruction('pad.7', 'bf16[8,64]{1,0} pad(%p, %p), padding=0_0x0_1',
                 'jvp(ResNet3D)/layer4_0/conv2/pad'),
    '  ROOT' + _instruction('reduce.8', 'bf16[] reduce(%p, %p), dimensions={0}',
                            'reduce_sum', ' stack_frame_id=2')[1:],
    '}',
])

EXPECTED_PARTS = {
    'custom-call.1': 'stage 1 conv forward',
    'custom-call.2': 'stage 1 conv dgrad',
    'custom-call.3': 'stem conv wgrad',
    'custom-call.4': 'stage 2 shortcut conv forward',
    'loop_add_fusion': 'stage 2 BatchNorm backward',
    'transpose_copy_fusion.3': 'stage 3 transposes/copies',
    'dot.5': 'crop resize',
    'select.6': 'max pool',
    'pad.7': 'stage 4 conv: other ops',
    'reduce.8': 'step other',
}


@pytest.fixture(scope='module')
def module():
    return profiling.parse_hlo_module(GPU_MODULE)


def test_instructions_are_read_with_opcode_target_and_metadata(module):
    assert module.name == 'jit_train_step'
    call = module.ops['custom-call.2']
    assert call.opcode == 'custom-call' and call.target == '__cudnn$convBackwardInput'
    assert call.op_name.endswith('layer1_0/conv2/conv_general_dilated')
    assert module.ops['loop_add_fusion'].calls == ('fused_computation.1',)
    assert module.computations['fused_computation.1'] == ('param_0', 'add.1')


def test_stack_frames_chain_from_the_innermost_call_outwards(module):
    sources = module.ops['select.6'].sources
    functions = [source for source in sources if not source.startswith('/')]
    assert functions == ['_pool_forward', 'train_step', 'measure']


@pytest.mark.parametrize('op_name, part', sorted(EXPECTED_PARTS.items()))
def test_every_instruction_is_placed_in_its_part_of_the_step(module, op_name, part):
    assert profiling.classify(module, op_name, kernel_name='k') == part


@pytest.mark.parametrize(
    'op_name, place',
    [
        ('jit(f)/jvp(ResNet3D)/ResNet3D.reference_stem/conv1/conv_general_dilated',
         ('stem', 'conv')),
        ('jit(f)/shard_map/(psum:psum:transpose(jvp(ResNet3D))/ResNet3D.reference_stem/bn1/psum)',
         ('stem', 'BatchNorm')),
        ('jit(f)/jvp(ResNet3D)/layer3_1/layer3_1.add_shortcut/add', ('stage 3', 'elementwise')),
        ('jit(f)/jvp(ResNet3D)/ResNet3D.classify/fc/dot_general', ('classifier', 'dense')),
        ('jit(f)/jvp(ResNet3D)/ResNet3D.normalise/sub', ('input', 'normalisation')),
        ('jit(f)/jvp(ResNet3D)/ResNet3D.reference_stem/select_n', ('model', 'elementwise')),
        ('jit(f)/jvp(DenseNet3D)/denseblock2/denselayer1/norm1/mul', ('stage 2', 'BatchNorm')),
        ('jit(f)/jvp(DenseNet3D)/conv0/conv_general_dilated', ('stem', 'conv')),
        ('jit(f)/jit(clip)/max', None),
    ],
)
def test_ops_are_placed_by_their_module_path(op_name, place):
    assert profiling.model_place(op_name) == place


@pytest.mark.parametrize(
    'kernel_name, part',
    [
        ('sm90_xmma_wgrad_implicit_gemm_bf16', 'conv wgrad (unattributed)'),
        ('sm90_xmma_dgrad_implicit_gemm_bf16', 'conv dgrad (unattributed)'),
        ('nhwcToNchwKernel', 'transposes/copies (unattributed)'),
        ('sm90_xmma_fprop_implicit_gemm_bf16', 'conv forward (unattributed)'),
        ('some_kernel', 'unattributed'),
    ],
)
def test_kernels_without_a_known_instruction_are_placed_by_their_name(kernel_name, part):
    assert profiling.classify(None, '', kernel_name) == part


def test_the_table_gives_per_step_times_shares_and_parts(module):
    gpu = '/device:GPU:0'
    kernels = [
        Kernel('sm90_xmma_fprop', 'custom-call.1', 'jit_train_step', gpu, 0.0, 6e6),
        Kernel('sm90_xmma_fprop', 'custom-call.1', 'jit_train_step', gpu, 10e6, 6e6),
        Kernel('loop_add_fusion', 'loop_add_fusion', 'jit_train_step', gpu, 7e6, 2e6),
        Kernel('loop_add_fusion', 'loop_add_fusion', 'jit_train_step', gpu, 17e6, 2e6),
        Kernel('copy', 'copy.1', 'jit_metrics', gpu, 19e6, 1e6),
        Kernel('nchwToNhwcKernel', '', '', gpu, 20e6, 3e6),
    ]
    table = profiling.kernel_table(kernels, [module], steps=2, top=3)
    assert table['kernel_ms_per_step'] == pytest.approx(10.0)
    assert table['span_ms_per_step'] == pytest.approx(11.5)
    assert table['busy_share'] == pytest.approx(10.0 / 11.5)
    assert table['attributed_share'] == pytest.approx(16 / 20)
    assert [row['kernel'] for row in table['kernels']] == [
        'sm90_xmma_fprop', 'loop_add_fusion', 'nchwToNhwcKernel',
    ]
    first = table['kernels'][0]
    assert first['category'] == 'stage 1 conv forward'
    assert first['ms_per_step'] == pytest.approx(6.0) and first['calls_per_step'] == 1
    assert first['share'] == pytest.approx(0.6)
    categories = {row['category']: row['ms_per_step'] for row in table['categories']}
    assert categories == pytest.approx({
        'stage 1 conv forward': 6.0,
        'stage 2 BatchNorm backward': 2.0,
        'transposes/copies (unattributed)': 1.5,
        'outside the step (jit_metrics)': 0.5,
    })
    assert 'stage 1 conv forward' in profiling.format_kernel_table(table)


def test_kernels_without_their_stats_are_placed_by_name_in_the_only_module(module):
    # A profiler that names modules otherwise and records no hlo_op: the kernel XLA named after
    # its fusion is still placed.
    kernels = [Kernel('loop_add_fusion', '', 'pmap_step', '/device:GPU:0', 0.0, 1e6)]
    table = profiling.kernel_table(kernels, [module], steps=1)
    assert table['module_names_matched'] is False and table['attributed_share'] == 1.0
    assert table['kernels'][0]['hlo_op'] == 'loop_add_fusion'
    assert table['kernels'][0]['category'] == 'stage 2 BatchNorm backward'


def test_a_log_directory_without_a_trace_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        profiling.find_xplane(str(tmp_path))
