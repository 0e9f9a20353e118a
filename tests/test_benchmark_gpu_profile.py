"""The one-run GPU profile's CPU check: every part recorded, the kernel table of a real trace.

Runs `benchmarks/gpu_profile.py --tiny` as a user would (once, shared by most tests) and reads
the JSON it writes; then checks that a spent budget skips parts with its reason and that a
resumed run keeps what the first one measured.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'benchmarks', 'gpu_profile.py')
CPU_ENV = {'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': ''}
PARTS = (
    'jax_environment',
    'torch_cudnn',
    'recipe_profile',
    'kernel_table',
    'conv_shapes',
    'best_resnet18',
    'xla_flags_1',
    'torch_resnet18',
    'resnet50',
    'best_resnet50',
    'torch_resnet50',
    'torch_resnet18_fp32',
)
LEFT_OUT_BY_TINY = ('resnet50', 'best_resnet50', 'torch_resnet50', 'torch_resnet18_fp32')


def run_profile(output_dir, *flags):
    completed = subprocess.run(
        [sys.executable, SCRIPT, f'--output_dir={output_dir}', *flags],
        cwd=REPO,
        env={**os.environ, **CPU_ENV},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with open(os.path.join(output_dir, 'gpu_profile.json')) as file:
        return json.load(file), completed.stdout


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    pytest.importorskip('torch')
    output_dir = tmp_path_factory.mktemp('gpu_profile')
    report, stdout = run_profile(output_dir, '--tiny')
    return output_dir, report, stdout


def test_tiny_run_completes_every_part_it_does_not_leave_out(tiny_run):
    _, report, stdout = tiny_run
    assert report['complete'] is True
    assert list(report['parts']) == list(PARTS)
    for name, part in report['parts'].items():
        if name in LEFT_OUT_BY_TINY:
            assert part['status'] == 'skipped' and '--tiny' in part['reason']
            continue
        assert part['status'] == 'ok', (name, part.get('reason'), part.get('output_tail'))
        assert part['result'] and part['result'].get('tensorflow_imported') is False, name
    assert 'ResNet-10 recipe step (batch 4 of 8x16x16' in stdout
    assert 'Parts: jax_environment ok' in stdout


def test_environment_parts_record_versions_and_the_conv3d_backend(tiny_run):
    _, report, _ = tiny_run
    jax_info = report['parts']['jax_environment']['result']
    assert jax_info['jax'] and jax_info['backend'] == 'cpu'
    assert 'jaxlib' in jax_info['environment_info']
    torch_info = report['parts']['torch_cudnn']['result']
    assert torch_info['torch'] and torch_info['conv3d_bf16_backend'] == 'no GPU: not checked'
    assert torch_info['conv3d_bf16_uses_cudnn'] is None
    assert any('conv' in event for event in torch_info['events'])


def test_kernel_table_reads_the_cpu_trace_of_the_recipe_step(tiny_run):
    output_dir, report, _ = tiny_run
    trace_dir = os.path.join(output_dir, 'profile', 'jax_train_recipe')
    assert os.listdir(os.path.join(trace_dir, 'plugins', 'profile'))
    table = report['parts']['kernel_table']['result']
    assert table['xplane'].startswith(trace_dir) and table['xplane'].endswith('.xplane.pb')
    assert os.path.exists(table['archive'])
    assert table['steps'] == 3 and len(table['devices']) == 4
    assert 0 < len(table['kernels']) <= 25 and table['attributed_share'] > 0.9
    shares = [row['share'] for row in table['kernels']]
    assert shares == sorted(shares, reverse=True)
    assert sum(row['share'] for row in table['categories']) == pytest.approx(1.0)
    categories = {row['category'] for row in table['categories']}
    for part in ('stem conv forward', 'stage 1 conv forward', 'stage 1 BatchNorm', 'crop resize',
                 'max pool', 'optimizer', 'loss'):
        assert part in categories, (part, sorted(categories))


def test_the_best_conv_choices_are_the_best_runs_overrides(tiny_run):
    _, report, _ = tiny_run
    conv_shapes = report['parts']['conv_shapes']['result']
    best = conv_shapes['best_overrides']
    assert set(best) == {'stem_conv', 'conv_formulation'} and not conv_shapes['not_selectable']
    roles = {entry['role'] for entry in conv_shapes['layers']}
    assert roles == {'stem', 'block'}
    for entry in conv_shapes['layers']:
        for result in entry['formulations'].values():
            assert result['total_ms'] > 0 and result['forward_difference'] < 1e-2
    measurement = report['parts']['best_resnet18']['result']['measurements']['jax_train_recipe']
    assert measurement['status'] == 'ok'
    overrides = measurement['model_overrides']
    assert overrides == {**best, 'conv_formulation': list(best['conv_formulation'])}


def test_each_xla_flag_set_runs_in_a_process_with_those_flags(tiny_run):
    _, report, _ = tiny_run
    part = report['parts']['xla_flags_1']
    flags = report['settings']['xla_flag_candidates'][0]
    assert part['environment']['XLA_FLAGS'].endswith(flags)
    assert flags in part['result']['environment']['XLA_FLAGS']


def test_a_spent_budget_skips_every_part_with_its_reason(tmp_path):
    report, stdout = run_profile(tmp_path, '--budget_minutes=0')
    assert report['complete'] is True and list(report['parts']) == [
        *PARTS[:7], 'xla_flags_2', 'xla_flags_3', *PARTS[7:]
    ]
    for part in report['parts'].values():
        assert part['status'] == 'skipped' and '--budget_minutes' in part['reason']
    assert 'Parts: jax_environment skipped' in stdout


def test_resume_keeps_the_completed_parts_and_reruns_the_named_ones(tiny_run, tmp_path):
    output_dir, first, _ = tiny_run
    copy = tmp_path / 'copy'
    shutil.copytree(output_dir, copy)
    resumed, _ = run_profile(copy, '--tiny', '--resume', '--only_parts=jax_environment')
    assert resumed['parts']['kernel_table'] == first['parts']['kernel_table']
    assert list(resumed['parts']) == list(PARTS)
    rerun = resumed['parts']['jax_environment']
    assert rerun['status'] == 'ok' and rerun != first['parts']['jax_environment']
