"""The training-step benchmark's CPU check: every figure recorded, the FLOP count, no TensorFlow.

Runs `benchmarks/train_step.py --tiny` as a user would and reads the JSON it writes: once in
full (shared by most tests), twice on a subset to see a failure stay contained and a resumed
run keep what the first one measured, and once per model family on its forward passes.
"""

import json
import os
import subprocess
import sys

import pytest

from r3d_jax.models import ARCHITECTURES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'benchmarks', 'train_step.py')
JAX_TRAIN = (
    'jax_train_recipe',
    'jax_train_stem_conv=direct',
    'jax_train_max_pool_gradient=select_and_scatter',
    'jax_train_bn_fast_variance=True',
)
MEASUREMENTS = (
    *JAX_TRAIN,
    'jax_eval',
    'torch_train_fp32',
    'torch_train_bf16_channels_last',
    'torch_train_bf16_channels_last_compile',
    'torch_eval',
)
CPU_ENV = {
    'JAX_PLATFORMS': 'cpu',
    'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
    'CUDA_VISIBLE_DEVICES': '',
}
MEASURED_ON_CPU = (
    *JAX_TRAIN,
    'jax_eval',
    'torch_train_fp32',
)


def run_tiny(output, *flags):
    """The JSON and printed output of a `--tiny` run on four CPU devices."""
    completed = subprocess.run(
        [sys.executable, SCRIPT, '--tiny', f'--output={output}', *flags],
        cwd=REPO,
        env={**os.environ, **CPU_ENV},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with open(output) as file:
        return json.load(file), completed.stdout


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    pytest.importorskip('torch')
    return run_tiny(tmp_path_factory.mktemp('benchmark') / 'train_step.json')


def test_tiny_run_records_every_measurement_and_setting(tiny_run):
    report, _ = tiny_run
    assert report['complete'] is True
    assert list(report['measurements']) == list(MEASUREMENTS)
    for field in ('settings', 'versions', 'environment', 'flops', 'ratios'):
        assert report[field], field
    assert report['settings']['depth'] == 10
    assert report['settings']['shortcut'] in ('A', 'B')
    assert report['versions']['jax'] and report['versions']['torch']
    assert set(report['ratios']) == {
        'fastest_torch_train_mode',
        'train_over_fastest_torch',
        'eval_over_torch_eval',
    }
    assert set(report['ratios']['train_over_fastest_torch']) == {
        name.removeprefix('jax_train_') for name in JAX_TRAIN
    }


def test_jax_and_torch_fp32_rates_are_positive(tiny_run):
    report, _ = tiny_run
    for name in MEASURED_ON_CPU:
        result = report['measurements'][name]
        assert result['status'] == 'ok', result
        unit = 'ms_per_step' if result['kind'] == 'train' else 'ms_per_batch'
        assert result[unit] > 0 and result['waited_median_ms'] > 0
        assert result['clips_per_second'] > 0
        assert result['achieved_tflops'] > 0
        assert len(result['step_ms']) == report['settings']['timed_steps']
        # No device memory statistics and no known bf16 peak on a CPU.
        assert result['peak_memory_bytes'] is None
        assert result['peak_share'] is None
    assert report['measurements']['jax_train_recipe']['num_devices'] == 4
    for ratio in report['ratios']['train_over_fastest_torch'].values():
        assert ratio > 0


def test_train_steps_report_a_finite_loss_and_their_model_options(tiny_run):
    report, _ = tiny_run
    for name in (*JAX_TRAIN, 'torch_train_fp32'):
        assert 0 < report['measurements'][name]['final_loss'] < float('inf')
    overrides = {name: report['measurements'][name]['model_overrides'] for name in JAX_TRAIN}
    assert overrides == {
        'jax_train_recipe': {},
        'jax_train_stem_conv=direct': {'stem_conv': 'direct'},
        'jax_train_max_pool_gradient=select_and_scatter': {
            'max_pool_gradient': 'select_and_scatter'
        },
        'jax_train_bn_fast_variance=True': {'bn_fast_variance': True},
    }
    for name in JAX_TRAIN:
        assert report['measurements'][name]['finite'] is True


def test_torch_compile_is_skipped_on_the_cpu_with_its_reason(tiny_run):
    report, _ = tiny_run
    compiled = report['measurements']['torch_train_bf16_channels_last_compile']
    assert compiled['status'] == 'skipped'
    assert '--torch_compile_on_cpu' in compiled['reason']


def test_torch_eval_runs_in_the_fastest_training_mode(tiny_run):
    report, _ = tiny_run
    fastest = report['ratios']['fastest_torch_train_mode']
    assert fastest in ('fp32', 'bf16_channels_last')
    torch_eval = report['measurements']['torch_eval']
    assert torch_eval['status'] == 'ok', torch_eval
    assert torch_eval['mode'] == fastest


def test_flop_count_gives_resnet18_its_8_31_gmac_per_clip(tiny_run):
    report, stdout = tiny_run
    flops = report['flops']
    assert flops['resnet18_b_16x112x112_forward_macs'] == pytest.approx(8.31e9, rel=0.005)
    assert flops['resnet18_b_16x112x112_matches'] is True
    assert flops['train_flops_per_clip'] == 6 * flops['forward_macs_per_clip']
    assert 0 < flops['forward_macs_per_clip'] < flops['resnet18_b_16x112x112_forward_macs']
    assert 'Counter check, ResNet-18 shortcut B at 16x112x112' in stdout


def test_tensorflow_is_never_imported(tiny_run):
    report, _ = tiny_run
    assert report['tensorflow_imported'] is False
    for name, result in report['measurements'].items():
        if result['status'] != 'skipped':
            assert result['tensorflow_imported'] is False, name


def test_a_failing_measurement_keeps_the_others_and_resume_reruns_only_it(tmp_path):
    pytest.importorskip('torch')
    output = tmp_path / 'train_step.json'
    # A batch of 4 does not split over 3 devices: the JAX measurement fails, PyTorch's does not.
    flags = ('--num_devices=3', '--torch_eval_mode=fp32')
    first, _ = run_tiny(output, '--only=jax_eval,torch_eval', *flags)
    assert first['complete'] is True
    assert first['measurements']['jax_eval']['status'] == 'error'
    assert 'does not split evenly over 3 devices' in first['measurements']['jax_eval']['error']
    assert first['measurements']['torch_eval']['status'] == 'ok'

    resumed, _ = run_tiny(output, '--only=jax_eval', '--resume', *flags)
    assert resumed['measurements']['torch_eval'] == first['measurements']['torch_eval']
    assert resumed['measurements']['jax_eval']['status'] == 'error'
    assert (
        resumed['measurements']['jax_eval']['process_seconds']
        != first['measurements']['jax_eval']['process_seconds']
    )


@pytest.mark.parametrize('arch', list(ARCHITECTURES))
def test_tiny_run_measures_every_model_family(tmp_path, arch):
    pytest.importorskip('torch')
    flags = ('--only=jax_eval,torch_eval', '--torch_eval_mode=fp32')
    steps = ('--warmup_steps=1', '--timed_steps=1')
    report, stdout = run_tiny(tmp_path / 'train_step.json', f'--arch={arch}', *flags, *steps)
    family = ARCHITECTURES[arch]
    depth = min(family.depths)
    assert (report['settings']['arch'], report['settings']['depth']) == (arch, depth)
    assert report['settings']['clip_length'] >= family.smallest_clip[0]
    for name in ('jax_eval', 'torch_eval'):
        assert report['measurements'][name]['status'] == 'ok', report['measurements'][name]
    assert report['flops']['forward_macs_per_clip'] > 0
    assert stdout.startswith(family.name(depth))
