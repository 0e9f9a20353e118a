r"""One GPU run that shows where the training step's time goes and measures what may cut it.

    python benchmarks/gpu_profile.py --output_dir=workdirs/gpu_profile  # a GPU, --budget_minutes
    python benchmarks/gpu_profile.py --tiny --output_dir=/tmp/gpu_profile  # the CPU check

It runs these parts in order, each in a process of its own with a time-out (`r3d_jax.processes.
run_command`: killed whole at its time-out, ended with this process), and starts a part only
if its expected time on an H200 (`Part.estimate_seconds`) fits in what is left of
`--budget_minutes`; the rest are recorded as skipped, and `--resume` runs them later:
1. `jax_environment`, `torch_cudnn`: JAX, jaxlib, CUDA and cuDNN versions as JAX sees them
   (and `jax.print_environment_info`), PyTorch's with `torch.backends.cudnn.version()`, and
   whether PyTorch's bf16 Conv3d runs cuDNN kernels or a fallback (`torch.profiler` kernels).
2. `recipe_profile`: `benchmarks/train_step.py` times the recipe's training step as `train.py`
   runs it (ResNet-18, batch 128 of 16x112x112, bf16, the crop resize inside the step) and the
   evaluation forward, then traces `--profile_steps` more steps of each with `jax.profiler`
   into `<output_dir>/profile/<measurement>` (TensorBoard's log directory layout), beside the
   compiled HLO text.
3. `kernel_table`: reads that trace (`r3d_jax.profiling`, no TensorFlow) and prints the 25 most
   expensive kernels with their time share and the part of the step each belongs to (stem conv,
   each stage's convs and their dgrad/wgrad, BatchNorm, max pool, crop resize, copies...).
4. `conv_shapes`: `benchmarks/conv_shapes.py` times every distinct conv of ResNet-18 in each
   exact formulation (`r3d_jax.models.conv_formulations`), forward, dgrad and wgrad, and picks
   the best per stage as `config.model` overrides.
5. `best_resnet18`: the training step and evaluation forward with those overrides.
6. `xla_flags_<n>`: the recipe's step under each of `--xla_flag_candidates`, one at a time, in
   fresh processes (XLA reads XLA_FLAGS at start-up).
7. `torch_resnet18`, `resnet50`, `best_resnet50`, `torch_resnet50`, `torch_resnet18_fp32`: the
   PyTorch modes of `train_step.py` beside them, and ResNet-50 (shortcut B, as the paper trains
   it) with the recipe's and the best choices.
Everything lands in `<output_dir>/gpu_profile.json` (rewritten after each part, `"complete":
false` until the end; each part's own JSON is embedded), with the trace and HLO text packed in
`<output_dir>/profile.tar.gz`; a summary is printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from r3d_jax import processes  # noqa: E402
from r3d_jax.benchmarking import versions, write_json_atomically  # noqa: E402

TRAIN_STEP = os.path.join(REPO, 'benchmarks', 'train_step.py')
CONV_SHAPES = os.path.join(REPO, 'benchmarks', 'conv_shapes.py')
DEFAULT_XLA_FLAG_CANDIDATES = (
    '--xla_gpu_force_conv_nhwc=true',
    '--xla_gpu_autotune_level=0',
    '--xla_gpu_enable_command_buffer=',
)
TORCH_BF16 = 'torch_train_bf16_channels_last_compile,torch_train_bf16_channels_last,torch_eval'
TORCH_TRAIN_MODES = (
    'torch_train_fp32', 'torch_train_bf16_channels_last', 'torch_train_bf16_channels_last_compile'
)
RESNET50 = ('--depth=50', '--shortcut=B')
# --tiny checks the parts' machinery on a CPU: every step is timed once, one XLA flag set is
# tried, no evaluation pass is timed, and these parts, the ResNet-18 parts' commands with other
# flags, are left out.
TINY_STEPS = ('--warmup_steps=1', '--timed_steps=1')
TINY_LEFT_OUT = ('resnet50', 'best_resnet50', 'torch_resnet50', 'torch_resnet18_fp32')
# torch_cudnn's probe, N, C, T, H, W: a stage-2 conv of the recipe's batch; with --tiny, small
# enough for PyTorch's CPU bf16 Conv3d (vol2col), which takes minutes at the full size.
TORCH_PROBE = (8, 64, 8, 28, 28)
TINY_TORCH_PROBE = (2, 16, 4, 8, 8)
# The kernel table's source: the recipe's training step as `train_step.py` names it.
PROFILED = 'jax_train_recipe'
OUTPUT_TAIL_CHARS = 4000
# A part may run this many times its estimate, within what is left of the budget; with --tiny,
# on a CPU that others may share, this long.
TIMEOUT_FACTOR = 3
TINY_TIMEOUT_SECONDS = 900
SUMMARY_CATEGORIES = 20


class Skip(Exception):
    """A part that cannot run now; its message says why."""


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    # Seconds it took, or is expected to take, on one H200 with its process start and
    # compiles: whether it fits in what is left of the budget.
    estimate_seconds: float
    # The command, from the run's arguments and the report so far (raises Skip).
    command: Callable[[argparse.Namespace, dict[str, Any]], list[str]]
    result_file: str  # The JSON the command writes in the output directory.
    environment: tuple[tuple[str, str], ...] = ()  # Set for the command on top of ours.


def best_overrides(report: dict[str, Any]) -> dict[str, Any]:
    """conv_shapes' best choices that this checkout's model accepts; else Skip."""
    conv_shapes = report['parts'].get('conv_shapes', {}).get('result') or {}
    overrides = conv_shapes.get('best_overrides')
    if not overrides:
        reason = conv_shapes.get('not_selectable') or 'conv_shapes measured no conv'
        raise Skip(f'No best choice is selectable: {reason}')
    return overrides


def train_step_part(
    name: str, estimate_seconds: float, only: str, *flags: str, best: bool = False,
    environment: tuple[tuple[str, str], ...] = (),
) -> Part:
    """A run of benchmarks/train_step.py; `best`: with conv_shapes' choices as overrides."""

    def command(args: argparse.Namespace, report: dict[str, Any]) -> list[str]:
        overrides = [f'--model_overrides={json.dumps(best_overrides(report))}'] if best else []
        return [
            sys.executable, TRAIN_STEP, f'--only={only}',
            f'--output={os.path.join(args.output_dir, f"{name}.json")}',
            *(['--tiny', *TINY_STEPS] if args.tiny else []), *flags, *overrides,
        ]

    return Part(name, estimate_seconds, command, f'{name}.json', environment)


def own_part(name: str, estimate_seconds: float) -> Part:
    """One of this script's own parts (`--part=name`), in a process of its own."""

    def command(args: argparse.Namespace, report: dict[str, Any]) -> list[str]:
        return [
            sys.executable, os.path.abspath(__file__), f'--part={name}',
            f'--output_dir={args.output_dir}', f'--profile_steps={args.profile_steps}',
            f'--top_kernels={args.top_kernels}',
            f'--result={os.path.join(args.output_dir, f"{name}.json")}',
            *(['--tiny'] if args.tiny else []),
        ]

    return Part(name, estimate_seconds, command, f'{name}.json')


def conv_shapes_part(estimate_seconds: float) -> Part:
    def command(args: argparse.Namespace, report: dict[str, Any]) -> list[str]:
        return [
            sys.executable, CONV_SHAPES,
            f'--output={os.path.join(args.output_dir, "conv_shapes.json")}',
            f'--time_budget={estimate_seconds}', *(['--tiny'] if args.tiny else []),
        ]

    return Part('conv_shapes', estimate_seconds, command, 'conv_shapes.json')


def parts(args: argparse.Namespace) -> list[Part]:
    """The run's parts, most telling first; estimates from the H200 run of train_step.py."""
    profile = (f'--profile_dir={os.path.join(args.output_dir, "profile")}',
               f'--profile_steps={args.profile_steps}')
    candidates = args.xla_flag_candidates[:1] if args.tiny else args.xla_flag_candidates
    jax_step = PROFILED if args.tiny else f'{PROFILED},jax_eval'
    xla_flags = [
        train_step_part(
            f'xla_flags_{index}', 40, PROFILED,
            environment=(('XLA_FLAGS', ' '.join(filter(None, (os.environ.get('XLA_FLAGS'),
                                                                flags)))),),
        )
        for index, flags in enumerate(candidates, start=1)
    ]
    return [
        own_part('jax_environment', 15),
        own_part('torch_cudnn', 25),
        train_step_part('recipe_profile', 70, jax_step, *profile),
        own_part('kernel_table', 20),
        conv_shapes_part(150),
        train_step_part('best_resnet18', 55, jax_step, best=True),
        *xla_flags,
        train_step_part('torch_resnet18', 95, TORCH_BF16),
        train_step_part('resnet50', 75, jax_step, *RESNET50),
        train_step_part('best_resnet50', 75, jax_step, *RESNET50, best=True),
        train_step_part('torch_resnet50', 110, TORCH_BF16, *RESNET50),
        train_step_part('torch_resnet18_fp32', 40, 'torch_train_fp32'),
    ]


# ---------------------------------------------------------------------------------------------
# This script's own parts, each run as `--part=<name>` in a process of its own.


def jax_environment(args: argparse.Namespace) -> dict[str, Any]:
    """JAX's versions and devices, and the CUDA libraries' versions as JAX loaded them."""
    import jax
    import jaxlib

    try:  # A private module: None without JAX's CUDA plugin, absent in other versions.
        from jax._src.lib import cuda_versions
    except ImportError:
        cuda_versions = None
    devices = jax.devices()
    libraries: dict[str, Any] = {}
    for name in sorted(dir(cuda_versions) if cuda_versions is not None else ()):
        if name.endswith('_get_version'):
            try:
                libraries[name.removesuffix('_get_version')] = getattr(cuda_versions, name)()
            except Exception as error:  # A library the plugin could not load.
                libraries[name.removesuffix('_get_version')] = f'{type(error).__name__}: {error}'
    return {
        'jax': jax.__version__,
        'jaxlib': jaxlib.__version__,
        'backend': jax.default_backend(),
        'devices': [device.device_kind for device in devices],
        'platform_version': getattr(devices[0].client, 'platform_version', None),
        'cuda_versions': libraries,
        'environment_info': jax.print_environment_info(return_string=True),
    }


def torch_cudnn(args: argparse.Namespace) -> dict[str, Any]:
    """PyTorch's CUDA and cuDNN versions, and which kernels its bf16 Conv3d runs.

    PyTorch 2.9 turned cuDNN off for half-precision 3D convs with cuDNN < 9.15; its fallback
    (`slow_conv3d`, vol2col plus GEMMs) is far slower, so a baseline must be seen on cuDNN.
    """
    import re

    import torch

    cuda = torch.cuda.is_available()
    device = 'cuda' if cuda else 'cpu'
    torch.backends.cudnn.benchmark = True
    batch, channels, *clip = TINY_TORCH_PROBE if args.tiny else TORCH_PROBE
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, bias=False).to(
        device, memory_format=torch.channels_last_3d
    )
    x = torch.randn(batch, channels, *clip, device=device).contiguous(
        memory_format=torch.channels_last_3d
    ).requires_grad_()

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            conv(x).float().square().mean().backward()
        if cuda:
            torch.cuda.synchronize()

    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    activities += [torch.profiler.ProfilerActivity.CUDA] if cuda else []
    with torch.profiler.profile(activities=activities) as profile:
        step()
    names = sorted({event.name for event in profile.events()})
    cudnn = [name for name in names if 'cudnn' in name.lower()]
    fallback = [name for name in names if re.search(r'slow_conv|vol2col|col2vol', name)]
    if not cuda:
        backend = 'no GPU: not checked'
    elif fallback:
        backend = 'fallback'
    else:
        backend = 'cudnn' if cudnn else 'unknown'
    return {
        'torch': torch.__version__,
        'cuda': torch.version.cuda,
        'device_name': torch.cuda.get_device_name() if cuda else 'cpu',
        'cudnn_available': torch.backends.cudnn.is_available(),
        'cudnn_enabled': torch.backends.cudnn.enabled,
        'cudnn_version': torch.backends.cudnn.version() if cuda else None,
        'conv3d_bf16_backend': backend,
        'conv3d_bf16_uses_cudnn': backend == 'cudnn' if cuda else None,
        'cudnn_events': cudnn[:20],
        'fallback_events': fallback[:20],
        'events': names[:200],
    }


def kernel_table(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe step's kernels from its trace, and the trace packed for TensorBoard."""
    import glob
    import tarfile

    from r3d_jax import profiling

    trace_dir = os.path.join(args.output_dir, 'profile', PROFILED)
    xplane = profiling.find_xplane(trace_dir)
    modules = []
    for path in sorted(glob.glob(os.path.join(trace_dir, '*.hlo.txt'))):
        with open(path) as file:
            modules.append(profiling.parse_hlo_module(file.read()))
    table = profiling.kernel_table(
        profiling.trace_kernels(xplane), modules, args.profile_steps, top=args.top_kernels
    )
    print(profiling.format_kernel_table(table))
    archive = os.path.join(args.output_dir, 'profile.tar.gz')
    with tarfile.open(f'{archive}.tmp', 'w:gz') as packed:
        packed.add(os.path.join(args.output_dir, 'profile'), arcname='profile')
    os.replace(f'{archive}.tmp', archive)
    return {
        'xplane': xplane, 'hlo_modules': [module.name for module in modules],
        'archive': archive, **table,
    }


OWN_PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    'jax_environment': jax_environment,
    'torch_cudnn': torch_cudnn,
    'kernel_table': kernel_table,
}


# ---------------------------------------------------------------------------------------------
# Running the parts.


def run_part(
    part: Part, args: argparse.Namespace, report: dict[str, Any], remaining: float
) -> dict[str, Any]:
    """The part's record: status, time, command, output's tail and the JSON it wrote."""
    if args.tiny and part.name in TINY_LEFT_OUT:
        return {'status': 'skipped', 'reason': 'Left out by --tiny (TINY_LEFT_OUT).'}
    if part.estimate_seconds > remaining:
        return {
            'status': 'skipped',
            'reason': f'--budget_minutes has {max(remaining, 0):.0f} s left; it takes '
            f'~{part.estimate_seconds:.0f} s on an H200 (--resume runs it later).',
        }
    try:
        command = part.command(args, report)
    except Skip as skip:
        return {'status': 'skipped', 'reason': str(skip)}
    result_path = os.path.join(args.output_dir, part.result_file)
    if os.path.exists(result_path):
        os.remove(result_path)  # A stale result must not pass for this run's.
    python_path = os.pathsep.join(filter(None, (REPO, os.environ.get('PYTHONPATH'))))
    env = {**os.environ, 'PYTHONPATH': python_path, **dict(part.environment)}
    timeout = min(remaining, TIMEOUT_FACTOR * part.estimate_seconds)
    timeout = TINY_TIMEOUT_SECONDS if args.tiny else timeout
    run = processes.run_command(command, timeout=timeout, env=env, cwd=REPO)
    result = None
    if os.path.exists(result_path):
        with open(result_path) as file:
            result = json.load(file)
    if run.returncode is None:
        status = 'timed out'
    else:
        status = 'ok' if run.returncode == 0 and result is not None else 'error'
    return {
        'status': status,
        'seconds': run.seconds,
        'timeout_seconds': timeout,
        'returncode': run.returncode,
        'command': command,
        'environment': dict(part.environment),
        'output_tail': run.output[-OUTPUT_TAIL_CHARS:],
        'result': result,
    }


def run_own_part(args: argparse.Namespace) -> None:
    result = OWN_PARTS[args.part](args)
    result['tensorflow_imported'] = 'tensorflow' in sys.modules
    write_json_atomically(args.result, result)


# ---------------------------------------------------------------------------------------------
# The summary.


def part_result(report: dict[str, Any], name: str) -> dict[str, Any]:
    return report['parts'].get(name, {}).get('result') or {}


def measured(report: dict[str, Any], part: str, measurement: str) -> dict[str, Any] | None:
    """A train_step.py measurement of a part, if it succeeded."""
    result = part_result(report, part).get('measurements', {}).get(measurement, {})
    return result if result.get('status') == 'ok' else None


def rate(result: dict[str, Any] | None) -> str:
    if not result:
        return 'n/a'
    ms = result.get('ms_per_step', result.get('ms_per_batch'))
    return f'{ms:.2f} ms, {result["clips_per_second"]:,.0f} clips/s'


def fastest_torch(report: dict[str, Any], *part_names: str) -> dict[str, Any] | None:
    """The fastest PyTorch training mode that the parts measured."""
    results = [
        measured(report, part, name) for part in part_names for name in TORCH_TRAIN_MODES
    ]
    return max(filter(None, results), key=lambda r: r['clips_per_second'], default=None)


def ratio(result: dict[str, Any] | None, baseline: dict[str, Any] | None) -> str:
    if not result or not baseline:
        return 'n/a'
    return f'{result["clips_per_second"] / baseline["clips_per_second"]:.2f}x'


def format_environment(report: dict[str, Any]) -> list[str]:
    jax_info, torch_info = part_result(report, 'jax_environment'), part_result(
        report, 'torch_cudnn'
    )
    libraries = jax_info.get('cuda_versions', {})
    return [
        f'Device: {", ".join(jax_info.get("devices", ["n/a"]))}; jax {jax_info.get("jax")}, '
        f'jaxlib {jax_info.get("jaxlib")}, CUDA runtime {libraries.get("cuda_runtime")}, '
        f'cuDNN {libraries.get("cudnn")} (as JAX sees them).',
        f'PyTorch {torch_info.get("torch")}, CUDA {torch_info.get("cuda")}, cuDNN '
        f'{torch_info.get("cudnn_version")}; bf16 Conv3d runs on: '
        f'{torch_info.get("conv3d_bf16_backend")}.',
    ]


def format_convs(report: dict[str, Any]) -> list[str]:
    conv_shapes = part_result(report, 'conv_shapes')
    lines = [f'{"conv (count)":<56} {"native ms":>10} {"best ms":>9}  best (TFLOP/s)']
    for entry in conv_shapes.get('layers', []):
        results = entry['formulations']
        best = results[entry['best']]
        native = results.get('native') or results.get('direct') or best
        speeds = '/'.join(f'{best[p]["tflops"]:.0f}' for p in ('forward', 'dgrad', 'wgrad')
                          if p in best)
        label = f'{entry["label"][:50]} (x{entry["count"]})'
        lines.append(
            f'{label:<56} {native["total_ms"]:>10.3f} {best["total_ms"]:>9.3f}  '
            f'{entry["best"]} ({speeds})'
        )
    lines.append(f'Choices: {conv_shapes.get("choices")}; as overrides: '
                 f'{conv_shapes.get("best_overrides")}; not selectable: '
                 f'{conv_shapes.get("not_selectable")}')
    return lines


def format_summary(report: dict[str, Any]) -> str:
    from r3d_jax import profiling

    lines = ['=' * 100, *format_environment(report)]
    recipe = measured(report, 'recipe_profile', PROFILED)
    torch18 = fastest_torch(report, 'torch_resnet18', 'torch_resnet18_fp32')
    settings = part_result(report, 'recipe_profile').get('settings', {})
    lines.append(
        f'ResNet-{settings.get("depth", 18)} recipe step (batch {settings.get("batch_size")} of '
        f'{settings.get("clip_length")}x{settings.get("crop_size")}x{settings.get("crop_size")}, '
        f'{settings.get("dtype")}): {rate(recipe)}; eval '
        f'{rate(measured(report, "recipe_profile", "jax_eval"))}.'
    )
    table = part_result(report, 'kernel_table')
    if table.get('kernels'):
        lines.append(profiling.format_kernel_table({
            **table, 'categories': table['categories'][:SUMMARY_CATEGORIES],
        }))
    lines += format_convs(report)
    best = measured(report, 'best_resnet18', PROFILED)
    lines.append(
        f'The same with the best choices: {rate(best)} ({ratio(best, recipe)} the recipe); '
        f'eval {rate(measured(report, "best_resnet18", "jax_eval"))}.'
    )
    for index, flags in enumerate(report['settings']['xla_flag_candidates'], start=1):
        if f'xla_flags_{index}' not in report['parts']:
            continue
        result = measured(report, f'xla_flags_{index}', PROFILED)
        lines.append(f'XLA_FLAGS={flags}: {rate(result)} ({ratio(result, recipe)} the recipe).')
    mode = torch18.get('mode') if torch18 else None
    lines.append(
        f'PyTorch fastest ({mode}): {rate(torch18)}; the recipe is '
        f'{ratio(recipe, torch18)} and the best choices {ratio(best, torch18)} of it (goal 2x).'
    )
    r50, r50_best = measured(report, 'resnet50', PROFILED), measured(report, 'best_resnet50',
                                                                       PROFILED)
    torch50 = fastest_torch(report, 'torch_resnet50')
    lines.append(
        f'ResNet-50 (B): recipe choices {rate(r50)}, best {rate(r50_best)}; PyTorch fastest '
        f'{rate(torch50)}: {ratio(r50, torch50)} / {ratio(r50_best, torch50)}.'
    )
    lines.append('Parts: ' + '; '.join(
        f'{name} {entry["status"]}' + (f' {entry["seconds"]:.0f} s' if 'seconds' in entry else '')
        for name, entry in report['parts'].items()
    ))
    lines.append(f'JSON: {report["output"]}')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Main.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--output_dir', default='workdirs/gpu_profile')
    parser.add_argument('--budget_minutes', type=float, default=8.5,
                        help='No part starts that would not end within this; tiny: no limit.')
    parser.add_argument(
        '--xla_flag_candidates', default=';'.join(DEFAULT_XLA_FLAG_CANDIDATES),
        help='XLA_FLAGS values to time the recipe step under, one at a time, separated by ";".',
    )
    parser.add_argument('--profile_steps', type=int, default=3, help='Steps traced.')
    parser.add_argument('--top_kernels', type=int, default=25)
    parser.add_argument('--only_parts', default='',
                        help='Comma-separated parts to run; default: all.')
    parser.add_argument('--resume', action='store_true',
                        help='Keep what an earlier run with the same settings recorded and run '
                        'the parts it did not complete (or only those --only_parts names).')
    parser.add_argument('--tiny', action='store_true',
                        help='A CPU check of the parts at tiny sizes (train_step.py --tiny, '
                        'conv_shapes.py --tiny; see TINY_LEFT_OUT), with no time budget.')
    parser.add_argument('--part', choices=sorted(OWN_PARTS), help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.output_dir = os.path.abspath(args.output_dir)
    args.xla_flag_candidates = [c.strip() for c in args.xla_flag_candidates.split(';') if c.strip()]
    known = {part.name for part in parts(args)}
    unknown = sorted(set(filter(None, args.only_parts.split(','))) - known)
    if unknown:
        parser.error(f'--only_parts names unknown parts {unknown}; known: {sorted(known)}.')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.part:
        run_own_part(args)
        return
    output = os.path.join(args.output_dir, 'gpu_profile.json')
    settings = {
        'tiny': args.tiny,
        'xla_flag_candidates': args.xla_flag_candidates,
        'profile_steps': args.profile_steps,
    }
    earlier: dict[str, Any] = {}
    if args.resume and os.path.exists(output):
        with open(output) as file:
            previous = json.load(file)
        if previous.get('settings') != settings:
            raise SystemExit(f'--resume: {output} was written with the settings '
                             f'{previous.get("settings")}, not {settings}.')
        earlier = previous['parts']
    report: dict[str, Any] = {
        'complete': False,
        'output': output,
        'settings': settings,
        'budget_minutes': None if args.tiny else args.budget_minutes,
        'versions': versions(),
        'parts': {},
    }
    selected = set(filter(None, args.only_parts.split(',')))
    budget = float('inf') if args.tiny else 60 * args.budget_minutes
    start = time.monotonic()
    for part in parts(args):
        before = earlier.get(part.name)
        # --only_parts runs the parts it names; otherwise all but those that completed before.
        completed = bool(before) and before['status'] == 'ok'
        wanted = part.name in selected if selected else not completed
        if wanted:
            entry = run_part(part, args, report, budget - (time.monotonic() - start))
        elif before:
            entry = before
        else:
            continue
        report['parts'][part.name] = entry
        write_json_atomically(output, report)
        why = entry.get('reason') or ''
        took = f'{entry["seconds"]:.0f} s' if 'seconds' in entry else ''
        print(f'{part.name:<22} {entry["status"]:<10} {took:>6} {why[:120]}', flush=True)
    report['seconds'] = time.monotonic() - start
    report['complete'] = True
    write_json_atomically(output, report)
    print(format_summary(report))


if __name__ == '__main__':
    main()
