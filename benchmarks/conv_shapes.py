r"""Speed of every distinct conv of a 3D ResNet in each exact formulation: forward, dgrad, wgrad.

    python benchmarks/conv_shapes.py --output=workdirs/benchmarks/conv_shapes.json  # on a GPU
    python benchmarks/conv_shapes.py --tiny  # a check on the CPU in seconds

Defaults are ResNet-18 of `configs/r18_ucf101.py` at batch 128 (one device's share) of 16x112x112
clips in bfloat16. The convs are found by running the model's initialisation with Flax's method
interceptor, so their shapes, strides and paddings are the model's own; each distinct one is
timed once, in order (the stem, then stage 1 to 4), with its count in the model:
- the stem conv in every `r3d_jax.models.conv_formulations.STEM_CONV_FORMULATIONS` variant,
  forward and weight gradient (the clips need no gradient);
- every other conv in every `CONV_FORMULATIONS` entry (the 2D folding is skipped for 1x1x1
  kernels, where it is the temporal-taps conv), forward, input gradient (dgrad) and weight
  gradient (wgrad), each a jitted function of random bfloat16 operands.
A time is that of `--timed_steps` calls issued back to back after `--warmup_steps` (the first
compiles). TFLOP/s count 2 * multiply-adds of the conv as written (the stem's 7x7 kernel, not its
zero-padded forms) for each of forward, dgrad and wgrad. Each formulation's forward output is
compared with the native conv's (`forward_difference`: max |difference| over max |native|).

The best choice is the stem variant with the least forward + wgrad time and, per stage, the
formulation with the least time over all the stage's convs (each counted as often as the model
has it; 'native' for a stage the time budget left unmeasured); `best_overrides` holds them as
`config.model` fields where this checkout's config defines them (others are listed in
`not_selectable`). The JSON is rewritten after each conv with `"complete": false`;
`--time_budget` stops before a conv once that many seconds have passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import r18_ucf101  # noqa: E402
from r3d_jax.benchmarking import (  # noqa: E402
    bf16_dense_peak_tflops,
    time_steps,
    versions,
    write_json_atomically,
)

TINY = {
    'batch_size': 2,
    'clip_length': 8,
    'crop_size': 16,
    'depth': 10,
    'warmup_steps': 1,
    'timed_steps': 2,
}
NUM_STAGES = 4


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One conv of the model, as its module computes it."""

    path: tuple[str, ...]  # Flax module path, e.g. ('layer2_0', 'conv1').
    input_shape: tuple[int, ...]  # [N, T, H, W, C]
    kernel_shape: tuple[int, ...]  # [kt, kh, kw, C / groups, O]
    output_shape: tuple[int, ...]
    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    groups: int
    stem: bool

    @property
    def stage(self) -> int:
        """0 for the stem, else the stage (1 to 4) of the block it is in."""
        for part in self.path:
            match = re.fullmatch(r'(?:layer|denseblock|transition)(\d+)(?:_\d+)?', part)
            if match:
                return int(match[1])
        return 0

    @property
    def role(self) -> str:
        if self.stem:
            return 'stem'
        return 'shortcut' if 'downsample' in self.path else 'block'

    @property
    def shape_key(self) -> tuple[Any, ...]:
        return (self.role, self.input_shape, self.kernel_shape, self.strides, self.padding,
                self.groups)

    @property
    def label(self) -> str:
        kernel = 'x'.join(map(str, self.kernel_shape[:3]))
        stride = 'x'.join(map(str, self.strides))
        where = 'stem' if self.stem else f'stage {self.stage} {self.role}'
        return (f'{where} {kernel} s{stride} {self.kernel_shape[3] * self.groups}->'
                f'{self.kernel_shape[4]} at {"x".join(map(str, self.input_shape[1:4]))}')

    @property
    def macs(self) -> int:
        return math.prod(self.output_shape) * math.prod(self.kernel_shape[:-1])


def benchmark_config(args: argparse.Namespace) -> Any:
    config = r18_ucf101.get_config()
    config.model.depth = args.depth
    config.model.dtype = args.dtype
    if args.shortcut:
        config.model.shortcut = args.shortcut
    config.input.clip_length = args.clip_length
    config.input.crop_size = args.crop_size
    return config


def _triple(value: Any) -> tuple[int, int, int]:
    if value is None:
        return (1, 1, 1)
    if isinstance(value, int):
        return (value,) * 3
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def conv_layers(config: Any, batch_size: int) -> list[ConvLayer]:
    """Every conv the model of `config` runs on a batch, in the order it runs them."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from jax import lax

    from r3d_jax.models import create_model

    model = create_model(config)
    layers = []

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        output = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != '__call__':  # E.g. field checks, on unbound modules.
            return output
        kernel = module.variables.get('params', {}).get('kernel')
        if kernel is None or kernel.ndim != 5:
            return output
        x = args[0]
        stem = hasattr(module, 'temporal_stride')
        if stem:
            kt = kernel.shape[0]
            strides, padding = (module.temporal_stride, 2, 2), ((kt // 2,) * 2, (3, 3), (3, 3))
        else:
            strides = _triple(module.strides)
            padding = module.padding
            if isinstance(padding, str):
                padding = lax.padtype_to_pads(x.shape[1:4], kernel.shape[:3], strides, padding)
            elif all(isinstance(p, int) for p in padding):  # Symmetric, per axis.
                padding = tuple((p, p) for p in padding)
        layers.append(ConvLayer(
            path=tuple(module.path),
            input_shape=tuple(x.shape),
            kernel_shape=tuple(kernel.shape),
            output_shape=tuple(output.shape),
            strides=tuple(strides),
            padding=tuple(tuple(int(p) for p in pair) for pair in padding),
            groups=int(getattr(module, 'groups', getattr(module, 'feature_group_count', 1))),
            stem=stem,
        ))
        return output

    side = config.input.crop_size
    clips = jax.ShapeDtypeStruct((batch_size, config.input.clip_length, side, side, 3), jnp.uint8)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda c: model.init(jax.random.key(0), c, train=False), clips)
    return layers


def distinct_layers(layers: list[ConvLayer]) -> list[tuple[ConvLayer, int]]:
    """Each distinct conv with how often the model runs it, in first-run order."""
    counts: dict[tuple[Any, ...], list[Any]] = {}
    for layer in layers:
        counts.setdefault(layer.shape_key, [layer, 0])[1] += 1
    return [(layer, count) for layer, count in counts.values()]


def formulations_of(layer: ConvLayer) -> dict[str, Any]:
    from r3d_jax.models.conv_formulations import CONV_FORMULATIONS, STEM_CONV_FORMULATIONS

    if layer.stem:
        return dict(STEM_CONV_FORMULATIONS)
    if layer.kernel_shape[0] == 1:
        return {name: f for name, f in CONV_FORMULATIONS.items() if name != 'folded_taps_2d'}
    return dict(CONV_FORMULATIONS)


def time_layer(layer: ConvLayer, args: argparse.Namespace) -> dict[str, Any]:
    """Every formulation's forward, dgrad (not the stem's) and wgrad time of one conv."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from r3d_jax.models.conv_formulations import CHANNELS_LAST_3D

    dtype = jnp.dtype(args.dtype)
    rng = np.random.default_rng(0)
    x, kernel, cotangent = (
        jnp.asarray(rng.standard_normal(shape, np.float32), dtype)
        for shape in (layer.input_shape, layer.kernel_shape, layer.output_shape)
    )
    device = jax.devices()[0]
    peak = bf16_dense_peak_tflops(device.device_kind)
    flops = 2 * layer.macs
    results: dict[str, Any] = {}
    native_forward = None
    for name, formulation in formulations_of(layer).items():
        if layer.stem:
            def conv(x: Any, kernel: Any, f: Any = formulation) -> Any:
                return f(x, kernel, layer.strides[0])
        else:
            def conv(x: Any, kernel: Any, f: Any = formulation) -> Any:
                return f(
                    x, kernel, layer.strides, layer.padding, dimension_numbers=CHANNELS_LAST_3D,
                    feature_group_count=layer.groups,
                )
        parts = {
            'forward': jax.jit(conv),
            'dgrad': jax.jit(lambda x, k, g, c=conv: jax.vjp(lambda x: c(x, k), x)[1](g)[0]),
            'wgrad': jax.jit(lambda x, k, g, c=conv: jax.vjp(lambda k: c(x, k), k)[1](g)[0]),
        }
        if layer.stem:
            del parts['dgrad']
        result: dict[str, Any] = {}
        for part, function in parts.items():
            operands = (x, kernel) if part == 'forward' else (x, kernel, cotangent)
            timing, output = time_steps(
                lambda f=function, o=operands: f(*o), jax.block_until_ready,
                args.warmup_steps, args.timed_steps,
            )
            tflops = flops / (timing['back_to_back_ms'] * 1e9)
            result[part] = {
                'ms': timing['back_to_back_ms'],
                'tflops': tflops,
                'peak_share': tflops / peak if peak else None,
                'first_call_seconds': timing['first_step_seconds'],
            }
            if part == 'forward':
                output = np.asarray(output, np.float32)
                native_forward = output if native_forward is None else native_forward
                scale = float(np.max(np.abs(native_forward))) or 1.0
                result['forward_difference'] = float(np.max(np.abs(output - native_forward)))
                result['forward_difference'] /= scale
        result['total_ms'] = sum(result[part]['ms'] for part in parts)
        results[name] = result
    best = min(results, key=lambda name: results[name]['total_ms'])
    return {'formulations': results, 'best': best, 'device': device.device_kind}


def choose(entries: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(choices, costs): the best stem variant, and per stage the formulation with the least
    total time over the stage's convs (1x1x1 convs' missing folding counts as their taps;
    a stage not measured keeps 'native')."""
    choices: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    stems = [entry for entry in entries if entry['role'] == 'stem']
    if stems:
        formulations = stems[0]['formulations']
        costs['stem'] = {name: r['total_ms'] for name, r in formulations.items()}
        choices['stem_conv'] = min(costs['stem'], key=costs['stem'].get)
    per_stage = []
    for stage in range(1, NUM_STAGES + 1):
        in_stage = [e for e in entries if e['stage'] == stage and e['role'] != 'stem']
        if not in_stage:  # Not measured (the time budget ran out): the native convs stay.
            per_stage.append('native')
            continue
        names = set(in_stage[0]['formulations']) | {'folded_taps_2d'}
        totals = {}
        for name in sorted(names):
            total = 0.0
            for entry in in_stage:
                results = entry['formulations']
                result = results.get(name) or results.get('temporal_taps_2d')
                total += entry['count'] * result['total_ms']
            totals[name] = total
        costs[f'stage {stage}'] = totals
        per_stage.append(min(totals, key=totals.get))
    if any(entry['role'] != 'stem' for entry in entries):
        choices['conv_formulation'] = tuple(per_stage)
    return choices, costs


def selectable(choices: dict[str, Any], config: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The choices this checkout's model accepts as config.model fields, and why the others
    are not."""
    from r3d_jax.models import create_model

    accepted, rejected = {}, {}
    for field, value in choices.items():
        if field not in config.model:
            rejected[field] = f'config.model has no field {field!r} in this checkout.'
            continue
        trial = r18_ucf101.get_config()
        trial.model[field] = value
        try:
            create_model(trial)
        except ValueError as error:
            rejected[field] = str(error)
            continue
        accepted[field] = value
    return accepted, rejected


def format_entry(entry: dict[str, Any]) -> str:
    lines = [f'{entry["label"]} (x{entry["count"]}, {2 * entry["macs"] / 1e9:.1f} GFLOP each)']
    for name, result in entry['formulations'].items():
        cells = []
        for part in ('forward', 'dgrad', 'wgrad'):
            if part in result:
                cells.append(f'{part} {result[part]["ms"]:8.3f} ms {result[part]["tflops"]:6.1f}')
        marker = '*' if name == entry['best'] else ' '
        lines.append(
            f'  {marker}{name:<29} ' + ' | '.join(cells)
            + f' | total {result["total_ms"]:8.3f} ms, diff {result["forward_difference"]:.1e}'
        )
    return '\n'.join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch_size', type=int, default=128, help='One device\'s batch.')
    parser.add_argument('--clip_length', type=int, default=16)
    parser.add_argument('--crop_size', type=int, default=112)
    parser.add_argument('--depth', type=int, default=18)
    parser.add_argument('--shortcut', choices=('', 'A', 'B'), default='',
                        help="'': that of configs/r18_ucf101.py.")
    parser.add_argument('--dtype', choices=('float32', 'bfloat16', 'float16'), default='bfloat16')
    parser.add_argument('--warmup_steps', type=int, default=2, help='Untimed; the first compiles.')
    parser.add_argument('--timed_steps', type=int, default=10)
    parser.add_argument('--time_budget', type=float, default=0,
                        help='Seconds after which no further conv is started; 0: no limit.')
    parser.add_argument('--output', default='workdirs/benchmarks/conv_shapes.json')
    parser.add_argument('--tiny', action='store_true', help='A quick CPU check: ' + ', '.join(
        f'{k}={v}' for k, v in TINY.items()) + '; explicit flags still win.')
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**TINY)
        args = parser.parse_args(argv)
    if args.warmup_steps < 1 or args.timed_steps < 1:
        parser.error('--warmup_steps and --timed_steps must be at least 1.')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    config = benchmark_config(args)
    layers = distinct_layers(conv_layers(config, args.batch_size))
    report: dict[str, Any] = {
        'complete': False,
        'settings': {**vars(args), 'recipe': 'configs/r18_ucf101.py',
                     'shortcut': config.model.shortcut},
        'versions': versions(),
        'layers': [],
        'skipped_layers': [],
        'stage_costs_ms': {},
        'choices': {},
        'best_overrides': {},
        'not_selectable': {},
    }
    write_json_atomically(args.output, report)
    for layer, count in layers:
        entry = {
            'label': layer.label, 'role': layer.role, 'stage': layer.stage, 'count': count,
            'path': '/'.join(layer.path), 'input_shape': layer.input_shape,
            'kernel_shape': layer.kernel_shape, 'output_shape': layer.output_shape,
            'strides': layer.strides, 'padding': layer.padding, 'groups': layer.groups,
            'macs': layer.macs,
        }
        if args.time_budget and time.perf_counter() - start > args.time_budget:
            report['skipped_layers'].append({**entry, 'reason': 'time budget spent'})
            continue
        entry.update(time_layer(layer, args))
        report['layers'].append(entry)
        choices, costs = choose(report['layers'])
        report['choices'], report['stage_costs_ms'] = choices, costs
        report['best_overrides'], report['not_selectable'] = selectable(choices, config)
        write_json_atomically(args.output, report)
        print(format_entry(entry), flush=True)
    report['complete'] = True
    report['seconds'] = time.perf_counter() - start
    report['tensorflow_imported'] = 'tensorflow' in sys.modules
    write_json_atomically(args.output, report)
    print(f'Best: {report["choices"]}; as config.model overrides: {report["best_overrides"]}'
          + (f'; not selectable here: {report["not_selectable"]}' if report['not_selectable']
             else '') + f'. JSON: {args.output}')


if __name__ == '__main__':
    main()
