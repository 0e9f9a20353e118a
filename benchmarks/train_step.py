r"""Speed of the training step and the evaluation forward pass, against the PyTorch model.

    python benchmarks/train_step.py --output=workdirs/benchmarks/train_step.json  # on a GPU
    python benchmarks/train_step.py --tiny  # a check on the CPU in well under a minute

Defaults are the GPU measurement: ResNet-18 of `configs/r18_ucf101.py`, batch 128 of 16x112x112
clips, 101 classes, bfloat16; `--arch` (and `--depth`) measure another family of
`r3d_jax.models`, e.g. `--arch=resnext --depth=101`. On the same device(s), in one run, it times:
- the training step exactly as `train.py` runs it (`r3d_jax.steps.make_p_train_step`: pmap over
  the local devices, the recipe's optimiser and its state update, BatchNorm statistics, donated
  state), as the recipe configures it and with one `config.model` option changed at a time
  (`JAX_TRAIN_VARIANTS`: the direct stem conv, XLA's max-pool gradient, one-pass BatchNorm
  variance), which shows what each option is worth;
- the evaluation forward pass of `eval.py` (`r3d_jax.steps.pmapped_eval_step`);
- the PyTorch implementation of the same model (`r3d_jax/models/torch_layouts.py`: same
  layout, depth, shortcut and classes) trained with torch.optim.SGD of the same
  hyper-parameters, in fp32 eager (how the reference runs), bf16 autocast + channels_last_3d,
  and the same + torch.compile; and its evaluation forward pass in the fastest of those modes.
Inputs sit in device memory before timing starts, so no input pipeline is measured: for JAX
uint8, as the input pipeline delivers it (training: multi-scale crops padded to the largest side,
which the step resizes and flips on the device; evaluation: clips), normalised on the device;
for PyTorch normalised float32 clips, as the reference's loader delivers them after resizing
on the CPU. The rate is that of `--timed_steps` steps issued back to back and waited for once
at the end, as `train.py` runs them (it reads each step's metrics one step later); the median of
the same number of steps each waited for on its own is recorded beside it (`waited_median_ms`),
so the host's per-step dispatch cost shows as their difference.

`--model_overrides` (a JSON object of `config.model` fields, e.g. the conv formulations that
`benchmarks/conv_shapes.py` found best) applies to every JAX measurement; `--profile_dir` makes
each JAX measurement trace `--profile_steps` more steps with `jax.profiler` into
`<profile_dir>/<measurement>` (a TensorBoard log directory) beside its compiled HLO text, which
`r3d_jax.profiling` turns into a kernel table (`benchmarks/gpu_profile.py` does both).

Each measurement runs in its own process: a failure, a hang (`--measurement_timeout`) or an
out-of-memory error loses only its own figures, peak device memory is that measurement's own,
and JAX and PyTorch never share a GPU's memory. The JSON (`--output`) is rewritten after each
measurement with `"complete": false` until the run ends. `--only` runs a subset, and `--resume`
keeps the successful measurements of an earlier run with the same settings, so a run cut short
continues where it stopped (ratios need both sides on the same kind of device).

Achieved TFLOP/s come from an analytic count of the convolutions' and the classifier's
multiply-adds, training counted as 3x the forward pass; the share of peak is against the
device's dense bf16 data-sheet peak when the device is known. Nothing here imports TensorFlow,
so it runs on machines with JAX and PyTorch only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import r18_ucf101  # noqa: E402
from r3d_jax import defaults, processes  # noqa: E402
from r3d_jax.benchmarking import (  # noqa: E402
    bf16_dense_peak_tflops,
    time_steps,
    versions,
    write_json_atomically,
)
from r3d_jax.models import ARCHITECTURES  # noqa: E402
from r3d_jax.models.layers import MAX_POOL_GRADIENTS  # noqa: E402

RECIPE = 'configs/r18_ucf101.py'
# Split 1's training videos: the learning-rate schedule's steps per epoch, as in training.
UCF101_TRAIN_VIDEOS = 9537
# Training costs about three forward passes: the forward, the input gradient, the weight gradient.
TRAIN_FLOPS_PER_FORWARD = 3
# The forward multiply-adds of one 16x112x112 clip through ResNet-18 with shortcut B.
RESNET18_FORWARD_MACS = 8.31e9
RESNET18_MACS_TOLERANCE = 0.005
TINY = {
    'batch_size': 4,
    'clip_length': 8,
    'crop_size': 16,
    'frame_short_side': 18,
    'num_classes': 5,
    'warmup_steps': 2,
    'timed_steps': 2,
}
TINY_CPU_DEVICES = 4
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every measurement process needs; recorded in the JSON as given."""

    batch_size: int
    clip_length: int
    crop_size: int
    frame_short_side: int  # Sets the training crops' sides, as the stored frames do.
    arch: str
    depth: int
    num_classes: int
    shortcut: str
    dtype: str
    warmup_steps: int
    timed_steps: int
    num_devices: int  # JAX devices the step is mapped over; 0: all local devices.
    torch_compile_on_cpu: bool
    torch_eval_mode: str  # The PyTorch mode of 'torch_eval'; '': the fastest training mode.
    model_overrides: dict[str, Any]  # config.model fields every JAX measurement sets.
    profile_dir: str  # Where JAX measurements write a trace of `profile_steps` steps; '': none.
    profile_steps: int


class Skipped(Exception):
    """A measurement that does not apply here; its message says why."""


# ---------------------------------------------------------------------------------------------
# Shared by the JAX and PyTorch measurements.


def benchmark_config(settings: Settings) -> Any:
    """The recipe's config with the benchmark's batch, clip shape, model size and dtype."""
    config = r18_ucf101.get_config()
    config.batch_size = settings.batch_size
    config.eval_batch_size = settings.batch_size
    config.input.clip_length = settings.clip_length
    config.input.crop_size = settings.crop_size
    config.data.frame_short_side = settings.frame_short_side
    config.model.arch = settings.arch
    config.model.depth = settings.depth
    config.model.num_classes = settings.num_classes
    config.model.shortcut = settings.shortcut
    config.model.dtype = settings.dtype
    config.model.update(config_values(settings.model_overrides))
    return config


def config_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides read from JSON, with lists as the tuples config fields hold."""
    return {key: tuple(v) if isinstance(v, list) else v for key, v in overrides.items()}


def random_clips(settings: Settings, leading_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """uint8 clips [*leading_shape, T, S, S, 3] and int32 labels [*leading_shape]."""
    import numpy as np

    rng = np.random.default_rng(0)
    side = settings.crop_size
    clips = rng.integers(
        0, 256, (*leading_shape, settings.clip_length, side, side, 3), dtype=np.uint8
    )
    labels = rng.integers(0, settings.num_classes, leading_shape, dtype=np.int32)
    return clips, labels


def rates(kind: str, batch_size: int, timing: dict[str, Any]) -> dict[str, Any]:
    """ms per training step (or per evaluation batch) and clips/s from a `time_steps` timing."""
    unit = 'ms_per_step' if kind == 'train' else 'ms_per_batch'
    return {
        unit: timing['back_to_back_ms'],
        'clips_per_second': 1000 * batch_size / timing['back_to_back_ms'],
        'waited_median_ms': timing['waited_median_ms'],
        'first_step_seconds': timing['first_step_seconds'],
        'step_ms': timing['step_ms'],
    }


# ---------------------------------------------------------------------------------------------
# JAX: the project's own steps.


def jax_devices(settings: Settings) -> list[Any]:
    import jax

    local = jax.local_devices()
    count = settings.num_devices or len(local)
    if count > len(local):
        raise ValueError(f'--num_devices={count}, but only {len(local)} local devices exist.')
    if settings.batch_size % count:
        raise ValueError(
            f'--batch_size={settings.batch_size} does not split evenly over {count} devices.'
        )
    return local[:count]


def jax_per_device_shape(settings: Settings, devices: list[Any]) -> tuple[int, int]:
    """A batch's leading axes: [devices, per-device batch]."""
    return len(devices), settings.batch_size // len(devices)


def on_devices(batch: dict[str, Any], devices: list[Any]) -> dict[str, Any]:
    """`batch` [devices, per-device batch, ...] split over the devices' memory."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from r3d_jax.steps import AXIS

    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))
    return jax.device_put(batch, sharding)


def jax_peak_memory_bytes(devices: list[Any]) -> int | None:
    """The largest peak of memory in use over `devices`; None where JAX does not track it."""
    peaks = [(device.memory_stats() or {}).get('peak_bytes_in_use') for device in devices]
    return None if None in peaks else max(peaks)


def jax_fresh_variables(settings: Settings, model: Any) -> dict[str, Any]:
    """Fresh variables on the host, as `train.py` makes them, from an 'rbg' key.

    The timed steps draw no random numbers, so the generator changes only the initial values;
    'rbg' compiles in a fraction of threefry's time, which dominates each process's start on
    a CPU.
    """
    import jax

    from r3d_jax.models import init_variables

    clip_shape = (1, settings.clip_length, settings.crop_size, settings.crop_size, 3)
    key = jax.random.key(benchmark_config(settings).seed, impl='rbg')
    return jax.device_get(init_variables(model, key, clip_shape))


def jax_description(devices: list[Any]) -> dict[str, Any]:
    import jax

    return {
        'device_kinds': [device.device_kind for device in devices],
        'platform': devices[0].platform,
        'num_devices': len(devices),
        'jax_version': jax.__version__,
    }


def jax_profile(
    settings: Settings, step: Callable[[], Any], compiled_text: Callable[[], str]
) -> dict[str, Any]:
    """Traces `settings.profile_steps` more steps into `settings.profile_dir` (a TensorBoard log
    directory) and writes the compiled module's text beside it, named after the module."""
    import jax

    if not settings.profile_dir:
        return {}
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # Python's calls would swamp the trace.
    with jax.profiler.trace(settings.profile_dir, profiler_options=options):
        for _ in range(settings.profile_steps):
            output = step()
        jax.block_until_ready(output)
    text = compiled_text()
    module = text.split(',', 1)[0].removeprefix('HloModule').strip()
    hlo_path = os.path.join(settings.profile_dir, f'{module}.hlo.txt')
    with open(f'{hlo_path}.tmp', 'w') as file:
        file.write(text)
    os.replace(f'{hlo_path}.tmp', hlo_path)
    return {'profile_dir': settings.profile_dir, 'profile_hlo': hlo_path}


def measure_jax_train(settings: Settings, *, model_overrides: dict[str, Any]) -> dict[str, Any]:
    """The training step of `train.py`: the same model, optimiser, state and pmapped step."""
    import jax
    import numpy as np

    from r3d_jax import optimizers
    from r3d_jax.crop_resize import CropResize
    from r3d_jax.models import create_model
    from r3d_jax.steps import AXIS, TrainState, make_p_train_step, random_train_batch, replicate

    config = benchmark_config(settings)
    config.model.update(model_overrides)
    devices = jax_devices(settings)
    model = create_model(config, bn_axis_name=AXIS)
    tx = optimizers.create_optimizer(config, max(1, UCF101_TRAIN_VIDEOS // config.batch_size))
    variables = jax_fresh_variables(settings, model)
    host_state = TrainState(
        params=variables['params'],
        batch_stats=variables['batch_stats'],
        opt_state=jax.device_get(tx.init(variables['params'])),
    )
    state = replicate(host_state, devices)
    # The input pipeline's training batch: crops of the recipe's random sides padded to the
    # largest, with flips, which the train step resizes.
    leading = jax_per_device_shape(settings, devices)
    batch = on_devices(random_train_batch(config, leading, np.random.default_rng(0)), devices)
    p_train_step = make_p_train_step(model, tx, CropResize.from_config(config))

    def step() -> tuple[Any, Any]:
        nonlocal state
        state, metrics = p_train_step(state, batch)
        return state, metrics

    timing, (_, metrics) = time_steps(
        step, jax.block_until_ready, settings.warmup_steps, settings.timed_steps
    )
    metrics = jax.device_get(metrics)
    profile = jax_profile(
        settings, step, lambda: p_train_step.lower(state, batch).compile().as_text()
    )
    return {
        **rates('train', settings.batch_size, timing),
        'peak_memory_bytes': jax_peak_memory_bytes(devices),
        'final_loss': float(metrics['loss']),
        'finite': bool(metrics['finite']),
        'model_overrides': {**settings.model_overrides, **model_overrides},
        **jax_description(devices),
        **profile,
    }


def measure_jax_eval(settings: Settings) -> dict[str, Any]:
    """The evaluation forward pass of `eval.py` (softmax and loss per clip)."""
    import jax

    from r3d_jax.models import create_model
    from r3d_jax.steps import AXIS, pmapped_eval_step, replicate

    config = benchmark_config(settings)
    devices = jax_devices(settings)
    model = create_model(config, bn_axis_name=AXIS)
    variables = replicate(jax_fresh_variables(settings, model), devices)
    clips, labels = random_clips(settings, jax_per_device_shape(settings, devices))
    batch = on_devices({'clips': clips, 'labels': labels}, devices)
    eval_step = pmapped_eval_step(model)
    arguments = (variables, batch['clips'], batch['labels'])
    timing, _ = time_steps(
        lambda: eval_step(*arguments),
        jax.block_until_ready,
        settings.warmup_steps,
        settings.timed_steps,
    )
    profile = jax_profile(
        settings,
        lambda: eval_step(*arguments),
        lambda: eval_step.lower(*arguments).compile().as_text(),
    )
    return {
        **rates('eval', settings.batch_size, timing),
        'peak_memory_bytes': jax_peak_memory_bytes(devices),
        'model_overrides': settings.model_overrides,
        **jax_description(devices),
        **profile,
    }


# ---------------------------------------------------------------------------------------------
# PyTorch: the same model in r3d_jax/models/torch_layouts.py.


@dataclasses.dataclass(frozen=True)
class TorchMode:
    bf16_autocast: bool
    channels_last_3d: bool
    compile: bool


TORCH_MODE_LABELS = {
    'fp32': 'fp32 eager',
    'bf16_channels_last': 'bf16 + channels_last_3d',
    'bf16_channels_last_compile': 'bf16 + channels_last_3d + compile',
}
TORCH_MODES = {
    'fp32': TorchMode(bf16_autocast=False, channels_last_3d=False, compile=False),
    'bf16_channels_last': TorchMode(bf16_autocast=True, channels_last_3d=True, compile=False),
    'bf16_channels_last_compile': TorchMode(
        bf16_autocast=True, channels_last_3d=True, compile=True
    ),
}


def torch_setup(settings: Settings, mode_name: str) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """(device, model, normalised float clips [N, 3, T, S, S] on it, labels, description)."""
    import numpy as np
    import torch

    from r3d_jax.models.torch_layouts import from_config

    mode = TORCH_MODES[mode_name]
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if mode.compile and device.type == 'cpu' and not settings.torch_compile_on_cpu:
        raise Skipped('torch.compile is skipped on the CPU (pass --torch_compile_on_cpu).')
    # cuDNN picks its fastest algorithms, as XLA autotunes its convolutions.
    torch.backends.cudnn.benchmark = True
    config = benchmark_config(settings)
    torch.manual_seed(config.seed)
    model = from_config(config.model).to(device)
    clips, labels = random_clips(settings, (settings.batch_size,))
    value_scale = config.input.value_scale
    mean = np.asarray(config.input.mean, np.float32)
    std = np.asarray(config.input.std, np.float32)
    normalised = ((clips.astype(np.float32) * value_scale - mean) / std).transpose(0, 4, 1, 2, 3)
    inputs = torch.from_numpy(np.ascontiguousarray(normalised)).to(device)
    targets = torch.from_numpy(labels.astype(np.int64)).to(device)
    if mode.channels_last_3d:
        model = model.to(memory_format=torch.channels_last_3d)
        inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
    if mode.compile:
        model = torch.compile(model)
    description = {
        'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
        'torch_version': torch.__version__,
        'cuda_version': torch.version.cuda,
        'cudnn_version': torch.backends.cudnn.version() if device.type == 'cuda' else None,
        'cudnn_benchmark': torch.backends.cudnn.benchmark,
        'cudnn_allow_tf32': torch.backends.cudnn.allow_tf32,
        'matmul_allow_tf32': torch.backends.cuda.matmul.allow_tf32,
        'mode': mode_name,
        **dataclasses.asdict(mode),
    }
    return device, model, inputs, targets, description


def torch_wait(device: Any) -> Callable[[Any], None]:
    import torch

    def wait(_: Any) -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    return wait


def torch_peak_memory_bytes(device: Any) -> int | None:
    import torch

    return torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None


def measure_torch_train(settings: Settings, *, mode_name: str) -> dict[str, Any]:
    """Forward, backward and torch.optim.SGD with the recipe's hyper-parameters."""
    import torch
    import torch.nn.functional as F

    device, model, inputs, targets, description = torch_setup(settings, mode_name)
    mode = TORCH_MODES[mode_name]
    sgd = benchmark_config(settings).optimizer
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=sgd.learning_rate,
        momentum=sgd.momentum,
        dampening=sgd.dampening,
        weight_decay=sgd.weight_decay,
        nesterov=sgd.nesterov,
    )
    model.train()

    def step() -> Any:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.bf16_autocast):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), targets)
        loss.backward()
        optimizer.step()
        return loss

    timing, loss = time_steps(
        step, torch_wait(device), settings.warmup_steps, settings.timed_steps
    )
    return {
        **rates('train', settings.batch_size, timing),
        'peak_memory_bytes': torch_peak_memory_bytes(device),
        'final_loss': float(loss.detach()),
        **description,
    }


def measure_torch_eval(settings: Settings) -> dict[str, Any]:
    """The evaluation forward pass (softmax and loss per clip) in `settings.torch_eval_mode`."""
    import torch
    import torch.nn.functional as F

    if not settings.torch_eval_mode:
        raise Skipped('No PyTorch training mode was measured, so none is the fastest.')
    device, model, inputs, targets, description = torch_setup(settings, settings.torch_eval_mode)
    mode = TORCH_MODES[settings.torch_eval_mode]
    model.eval()

    def step() -> tuple[Any, Any]:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.bf16_autocast),
        ):
            log_probabilities = F.log_softmax(model(inputs).float(), dim=-1)
            losses = -log_probabilities.gather(1, targets[:, None])[:, 0]
            return log_probabilities.exp(), losses

    timing, _ = time_steps(step, torch_wait(device), settings.warmup_steps, settings.timed_steps)
    return {
        **rates('eval', settings.batch_size, timing),
        'peak_memory_bytes': torch_peak_memory_bytes(device),
        **description,
    }


# ---------------------------------------------------------------------------------------------
# The measurements, each run in its own process.


@dataclasses.dataclass(frozen=True)
class Measurement:
    name: str
    label: str
    kind: str  # 'train' or 'eval'.
    framework: str  # 'jax' or 'torch'.
    run: Callable[[Settings], dict[str, Any]]


def alternative(field: str, choices: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """The variant that sets `config.model.<field>` to its choice other than the recipe's."""
    recipe_value = r18_ucf101.get_config().model[field]
    (other,) = (choice for choice in choices if choice != recipe_value)
    return f'{field}={other}', {field: other}


# The recipe first (the figure that matters if a run is cut short), then one option changed.
JAX_TRAIN_VARIANTS = (
    ('recipe', {}),
    alternative('stem_conv', ('direct', 'space_to_depth')),
    alternative('max_pool_gradient', MAX_POOL_GRADIENTS),
    alternative('bn_fast_variance', (False, True)),
)
MEASUREMENTS = (
    *(
        Measurement(
            f'jax_train_{variant}',
            f'JAX train, {variant}',
            'train',
            'jax',
            functools.partial(measure_jax_train, model_overrides=overrides),
        )
        for variant, overrides in JAX_TRAIN_VARIANTS
    ),
    Measurement('jax_eval', 'JAX eval forward', 'eval', 'jax', measure_jax_eval),
    *(
        Measurement(
            f'torch_train_{mode}',
            f'PyTorch train, {TORCH_MODE_LABELS[mode]}',
            'train',
            'torch',
            functools.partial(measure_torch_train, mode_name=mode),
        )
        for mode in TORCH_MODES
    ),
    Measurement('torch_eval', 'PyTorch eval', 'eval', 'torch', measure_torch_eval),
)
MEASUREMENTS_BY_NAME = {measurement.name: measurement for measurement in MEASUREMENTS}


def run_worker(spec_path: str) -> None:
    """Runs the one measurement that `spec_path` names; writes its result where it says.

    `processes.run_command` started this process, so it ends with the one that runs the
    benchmark: a run cut short must not leave a measurement holding the device.
    """
    with open(spec_path) as file:
        spec = json.load(file)
    settings = Settings(**spec['settings'])
    if settings.profile_dir:
        profile_dir = os.path.join(settings.profile_dir, spec['measurement'])
        settings = dataclasses.replace(settings, profile_dir=profile_dir)
    try:
        result = {'status': 'ok', **MEASUREMENTS_BY_NAME[spec['measurement']].run(settings)}
    except Skipped as skipped:
        result = {'status': 'skipped', 'reason': str(skipped)}
    except Exception as error:
        result = {
            'status': 'error',
            'error': f'{type(error).__name__}: {error}',
            'traceback': traceback.format_exc()[-4000:],
        }
    result['tensorflow_imported'] = 'tensorflow' in sys.modules
    write_json_atomically(spec['result_path'], result)


def measure_in_subprocess(
    measurement: Measurement, settings: Settings, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """The result of `measurement` run in a fresh process, or the reason there is none."""
    with tempfile.TemporaryDirectory() as scratch:
        spec_path = os.path.join(scratch, 'spec.json')
        result_path = os.path.join(scratch, 'result.json')
        spec = {
            'measurement': measurement.name,
            'settings': dataclasses.asdict(settings),
            'result_path': result_path,
        }
        write_json_atomically(spec_path, spec)
        run = processes.run_command(
            [sys.executable, os.path.abspath(__file__), f'--worker={spec_path}'],
            timeout=timeout,
            env=env,
            cwd=REPO,
        )
        if run.returncode is None:
            return {
                'status': 'error',
                'error': f'Timed out after {timeout:.0f} s (--measurement_timeout).',
                'output_tail': run.output[-3000:],
            }
        if not os.path.exists(result_path):
            return {
                'status': 'error',
                'error': f'The measurement process exited with code {run.returncode} '
                'before writing a result.',
                'output_tail': run.output[-3000:],
            }
        with open(result_path) as file:
            result = json.load(file)
        result['process_seconds'] = run.seconds
        return result


def worker_environment(tiny: bool) -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, (REPO, os.environ.get('PYTHONPATH'))))
    env = {**os.environ, 'PYTHONPATH': python_path}
    xla_flags = env.get('XLA_FLAGS', '')
    if tiny and 'xla_force_host_platform_device_count' not in xla_flags:
        # Several CPU devices, so that the pmap over devices and synchronised BatchNorm run.
        flag = f'--xla_force_host_platform_device_count={TINY_CPU_DEVICES}'
        env['XLA_FLAGS'] = f'{xla_flags} {flag}'.strip()
    return env


# ---------------------------------------------------------------------------------------------
# Work counts and the device's peak.


def count_flops(settings: Settings) -> dict[str, Any]:
    """The benchmarked model's work per clip, and the check of the counter on ResNet-18."""
    import jax

    # Counting needs no accelerator; this process must leave the devices to the measurements.
    jax.config.update('jax_platforms', 'cpu')
    from r3d_jax.models import create_model
    from r3d_jax.models.flops import forward_macs_per_clip

    model = create_model(benchmark_config(settings))
    forward_macs = forward_macs_per_clip(model, settings.clip_length, settings.crop_size)
    reference = benchmark_config(settings)
    reference.model.arch, reference.model.depth = 'resnet', 18
    reference.model.shortcut, reference.model.num_classes = 'B', 101
    resnet18_macs = forward_macs_per_clip(create_model(reference), 16, 112)
    return {
        'forward_macs_per_clip': forward_macs,
        'forward_flops_per_clip': 2 * forward_macs,
        'train_flops_per_clip': 2 * TRAIN_FLOPS_PER_FORWARD * forward_macs,
        'train_flops_per_forward_flops': TRAIN_FLOPS_PER_FORWARD,
        'resnet18_b_16x112x112_forward_macs': resnet18_macs,
        'resnet18_b_16x112x112_expected_macs': RESNET18_FORWARD_MACS,
        'resnet18_b_16x112x112_matches': abs(resnet18_macs / RESNET18_FORWARD_MACS - 1)
        <= RESNET18_MACS_TOLERANCE,
    }


def device_name(result: dict[str, Any]) -> str | None:
    if 'device_kinds' in result:
        return result['device_kinds'][0]
    return result.get('device_name')


def add_achieved_tflops(result: dict[str, Any], kind: str, flops: dict[str, Any] | None) -> None:
    """TFLOP/s of a successful measurement and its share of its device's bf16 peak."""
    if result.get('status') != 'ok' or not flops or 'error' in flops:
        return
    per_clip = flops['train_flops_per_clip' if kind == 'train' else 'forward_flops_per_clip']
    tflops = result['clips_per_second'] * per_clip / 1e12
    name = device_name(result)
    peak = bf16_dense_peak_tflops(name) if name else None
    result['achieved_tflops'] = tflops
    result['peak_bf16_dense_tflops'] = peak
    result['peak_share'] = tflops / peak if peak else None


def ratios(measurements: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """This project's rates over the fastest PyTorch training mode's and PyTorch's eval's.

    A ratio is given only when both figures come from the same kind of device (a resumed run
    may have continued on another machine).
    """

    def succeeded(name: str) -> dict[str, Any] | None:
        result = measurements.get(name, {})
        return result if result.get('status') == 'ok' else None

    torch_train = [succeeded(f'torch_train_{mode}') for mode in TORCH_MODES]
    torch_train = [result for result in torch_train if result]
    fastest = max(torch_train, key=lambda result: result['clips_per_second'], default=None)

    def ratio(name: str, baseline: dict[str, Any] | None) -> float | None:
        result = succeeded(name)
        if not result or not baseline or device_name(result) != device_name(baseline):
            return None
        return result['clips_per_second'] / baseline['clips_per_second']

    return {
        'fastest_torch_train_mode': fastest['mode'] if fastest else None,
        'train_over_fastest_torch': {
            variant: ratio(f'jax_train_{variant}', fastest) for variant, _ in JAX_TRAIN_VARIANTS
        },
        'eval_over_torch_eval': ratio('jax_eval', succeeded('torch_eval')),
    }


# ---------------------------------------------------------------------------------------------
# Report.


LABEL_WIDTH = 50


def format_header(settings: dict[str, Any]) -> str:
    return '\n'.join((
        f'{ARCHITECTURES[settings["arch"]].name(settings["depth"])} '
        f'(shortcut {settings["shortcut"]}, '
        f'{settings["num_classes"]} classes), batch {settings["batch_size"]} of '
        f'{settings["clip_length"]}x{settings["crop_size"]}x{settings["crop_size"]} clips, '
        f'JAX in {settings["dtype"]}; {settings["warmup_steps"]} warm-up + '
        f'{settings["timed_steps"]} steps back to back (and as many each waited for: '
        '"waited")' + (
            f'; every JAX measurement with config.model {settings["model_overrides"]}.'
            if settings['model_overrides'] else '.'
        ),
        f'{"measurement":<{LABEL_WIDTH}} {"ms/batch":>8} {"waited":>7} {"clips/s":>9} '
        f'{"TFLOP/s":>9} {"% peak":>7} {"peak GiB":>9}',
    ))


def format_row(label: str, result: dict[str, Any]) -> str:
    if result.get('status') != 'ok':
        why = (result.get('reason') or result.get('error') or '').splitlines()
        return f'{label:<{LABEL_WIDTH}} {result.get("status"):>8}  {why[0][:100] if why else ""}'
    ms = result.get('ms_per_step', result.get('ms_per_batch'))

    def optional(value: float | None, spec: str) -> str:
        return 'n/a' if value is None else format(value, spec)

    memory = result.get('peak_memory_bytes')
    share = result.get('peak_share')
    return (
        f'{label:<{LABEL_WIDTH}} {ms:>8.2f} {result["waited_median_ms"]:>7.2f} '
        f'{result["clips_per_second"]:>9.1f} '
        f'{optional(result.get("achieved_tflops"), ".3f"):>9} '
        f'{optional(None if share is None else 100 * share, ".1f"):>7} '
        f'{optional(None if memory is None else memory / GIB, ".2f"):>9}'
    )


def format_summary(report: dict[str, Any]) -> str:
    """What the table's figures rest on, and the ratios."""
    lines = []
    flops = report['flops']
    if 'error' in flops:
        lines.append(f'FLOP count failed: {flops["error"]}')
    else:
        lines.append(
            f'Work per clip: {flops["forward_macs_per_clip"] / 1e9:.4g} GMAC forward '
            f'({flops["forward_flops_per_clip"] / 1e9:.4g} GFLOP), training counted as '
            f'{TRAIN_FLOPS_PER_FORWARD}x. Counter check, ResNet-18 shortcut B at 16x112x112: '
            f'{flops["resnet18_b_16x112x112_forward_macs"] / 1e9:.3f} GMAC '
            f'(expected {RESNET18_FORWARD_MACS / 1e9:.2f}).'
        )
    peaks = {
        device_name(result): result['peak_bf16_dense_tflops']
        for result in report['measurements'].values()
        if 'peak_bf16_dense_tflops' in result
    }
    lines.append(
        '% peak is of the dense bf16 data-sheet peak, TFLOP/s: '
        + '; '.join(f'{name}: {peak or "unknown"}' for name, peak in peaks.items())
    )
    r = report['ratios']

    def shown(value: float | None) -> str:
        return 'n/a' if value is None else f'{value:.2f}x'

    train_ratios = ', '.join(
        f'{variant} {shown(ratio)}' for variant, ratio in r['train_over_fastest_torch'].items()
    )
    lines.append(
        f'This project over the fastest PyTorch training ({r["fastest_torch_train_mode"]}): '
        f'{train_ratios}; evaluation over PyTorch evaluation {shown(r["eval_over_torch_eval"])}.'
    )
    v = report['versions']
    lines.append(f'jax {v["jax"]}, flax {v["flax"]}, torch {v["torch"]}; JSON: {report["output"]}')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Main.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch_size', type=int, default=128, help='Global batch per step.')
    parser.add_argument('--clip_length', type=int, default=16)
    parser.add_argument('--crop_size', type=int, default=112)
    parser.add_argument(
        '--frame_short_side', type=int, default=r18_ucf101.get_config().data.frame_short_side,
        help='Short side of the stored frames, which sets the training crops\' sides.',
    )
    parser.add_argument(
        '--arch', choices=tuple(ARCHITECTURES), default=r18_ucf101.get_config().model.arch
    )
    parser.add_argument(
        '--depth', type=int,
        help=f'Default: that of {RECIPE} where the arch has it, else the arch\'s smallest.',
    )
    parser.add_argument('--num_classes', type=int, default=101)
    parser.add_argument(
        '--shortcut', choices=('A', 'B'),
        help=f"Default: that of {RECIPE} for its arch, else 'B' (the released models').",
    )
    parser.add_argument('--dtype', choices=('float32', 'bfloat16', 'float16'), default='bfloat16')
    parser.add_argument('--warmup_steps', type=int, default=5, help='Untimed; the first compiles.')
    parser.add_argument('--timed_steps', type=int, default=20)
    parser.add_argument('--num_devices', type=int, default=0, help='JAX devices; 0: all local.')
    parser.add_argument(
        '--only', default='', help='Comma-separated measurements to run; default: all of '
        + ', '.join(MEASUREMENTS_BY_NAME) + '.'
    )
    parser.add_argument(
        '--torch_eval_mode', choices=('', *TORCH_MODES), default='',
        help="PyTorch evaluation mode; '': the fastest PyTorch training mode measured.",
    )
    parser.add_argument('--torch_compile_on_cpu', action='store_true')
    parser.add_argument(
        '--model_overrides', default='{}',
        help='JSON object of config.model fields that every JAX measurement sets, e.g. '
        '\'{"stem_conv": "space_to_depth_padded"}\'.',
    )
    parser.add_argument(
        '--profile_dir', default='',
        help='Where each JAX measurement writes a jax.profiler trace (TensorBoard log directory '
        '<profile_dir>/<measurement>) of --profile_steps more steps and its compiled HLO text.',
    )
    parser.add_argument('--profile_steps', type=int, default=3)
    parser.add_argument(
        '--measurement_timeout', type=float, default=600, help='Seconds per measurement.'
    )
    parser.add_argument('--output', default='workdirs/benchmarks/train_step.json')
    parser.add_argument(
        '--resume', action='store_true',
        help='Keep the successful measurements already in --output (same settings) and run '
        'only the others, e.g. after a time-out.',
    )
    parser.add_argument(
        '--tiny', action='store_true',
        help='A quick CPU check: ' + ', '.join(f'{k}={v}' for k, v in TINY.items())
        + f", the arch's smallest depth (and clip, if larger), {TINY_CPU_DEVICES} CPU devices; "
        'explicit flags still win.',
    )
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**tiny_defaults(args.arch))
        args = parser.parse_args(argv)
    family = ARCHITECTURES[args.arch]
    if args.depth is None:
        recipe_depth = r18_ucf101.get_config().model.depth
        args.depth = recipe_depth if recipe_depth in family.depths else family.depths[0]
    if args.depth not in family.depths:
        parser.error(f'--depth={args.depth} is not one of {family.depths} for --arch={args.arch}.')
    unknown = sorted(set(filter(None, args.only.split(','))) - set(MEASUREMENTS_BY_NAME))
    if unknown:
        parser.error(f'--only names unknown measurements {unknown}; known: '
                     f'{", ".join(MEASUREMENTS_BY_NAME)}.')
    if args.warmup_steps < 1 or args.timed_steps < 1:
        parser.error('--warmup_steps and --timed_steps must be at least 1.')
    try:
        overrides = json.loads(args.model_overrides)
    except json.JSONDecodeError as error:
        parser.error(f'--model_overrides is not JSON: {error}.')
    if not isinstance(overrides, dict):
        parser.error(f'--model_overrides must be a JSON object; got {args.model_overrides}.')
    config = r18_ucf101.get_config()
    config.model.update(config_values(overrides))
    try:
        defaults.check_known_fields(config)
    except defaults.ConfigError as error:
        parser.error(f'--model_overrides: {error}')
    args.model_overrides = overrides
    return args


def tiny_defaults(arch: str) -> dict[str, Any]:
    """TINY, with the smallest depth of `arch` and at least the smallest clip it runs on."""
    family = ARCHITECTURES[arch]
    shortest, smallest = family.smallest_clip
    crop_size = max(TINY['crop_size'], smallest)
    return {
        **TINY,
        'clip_length': max(TINY['clip_length'], shortest),
        'crop_size': crop_size,
        'frame_short_side': crop_size + TINY['frame_short_side'] - TINY['crop_size'],
        'depth': min(family.depths),
    }


def earlier_results(path: str, settings_record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The successful measurements that an earlier run with the same settings left at `path`."""
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        earlier = json.load(file)
    if earlier.get('settings') != settings_record:
        raise SystemExit(
            f'--resume: {path} was written with the settings {earlier.get("settings")}, not '
            f'{settings_record}; use another --output or the same flags.'
        )
    return {
        name: result
        for name, result in earlier.get('measurements', {}).items()
        if result.get('status') == 'ok'
    }


def default_shortcut(arch: str) -> str:
    recipe = r18_ucf101.get_config().model
    return recipe.shortcut if arch == recipe.arch else 'B'


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        batch_size=args.batch_size,
        clip_length=args.clip_length,
        crop_size=args.crop_size,
        frame_short_side=args.frame_short_side,
        arch=args.arch,
        depth=args.depth,
        num_classes=args.num_classes,
        shortcut=args.shortcut or default_shortcut(args.arch),
        dtype=args.dtype,
        warmup_steps=args.warmup_steps,
        timed_steps=args.timed_steps,
        num_devices=args.num_devices,
        torch_compile_on_cpu=args.torch_compile_on_cpu,
        torch_eval_mode=args.torch_eval_mode,
        model_overrides=args.model_overrides,
        profile_dir=os.path.abspath(args.profile_dir) if args.profile_dir else '',
        profile_steps=args.profile_steps,
    )


def run_measurements(
    args: argparse.Namespace,
    settings: Settings,
    report: dict[str, Any],
    kept: dict[str, dict[str, Any]],
) -> None:
    """Fills `report['measurements']` in order, taking `kept` results as they are and running
    the others that `--only` selects; rewrites the JSON after each one."""
    selected = set(filter(None, args.only.split(','))) or set(MEASUREMENTS_BY_NAME)
    env = worker_environment(args.tiny)
    torch_installed = importlib.util.find_spec('torch') is not None
    for measurement in MEASUREMENTS:
        if measurement.name in kept:
            result = kept[measurement.name]
        elif measurement.name not in selected:
            continue
        elif measurement.framework == 'torch' and not torch_installed:
            result = {'label': measurement.label, 'status': 'skipped'}
            result['reason'] = 'PyTorch is not installed.'
        else:
            label = measurement.label
            if measurement.name == 'torch_eval':
                if not settings.torch_eval_mode:
                    fastest = ratios(report['measurements'])['fastest_torch_train_mode']
                    settings = dataclasses.replace(settings, torch_eval_mode=fastest or '')
                if settings.torch_eval_mode:
                    label = f'PyTorch eval, {TORCH_MODE_LABELS[settings.torch_eval_mode]}'
            result = measure_in_subprocess(measurement, settings, env, args.measurement_timeout)
            result = {'label': label, 'kind': measurement.kind, **result}
            add_achieved_tflops(result, measurement.kind, report['flops'])
        report['measurements'][measurement.name] = result
        report['ratios'] = ratios(report['measurements'])
        report['tensorflow_imported'] |= bool(result.get('tensorflow_imported'))
        write_json_atomically(args.output, report)
        print(format_row(result['label'], result), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker)
        return
    settings = settings_from_args(args)
    report: dict[str, Any] = {
        'complete': False,
        'output': args.output,
        'settings': {**dataclasses.asdict(settings), 'recipe': RECIPE, 'tiny': args.tiny},
        'environment': {
            key: worker_environment(args.tiny).get(key) for key in ('XLA_FLAGS', 'JAX_PLATFORMS')
        },
        'versions': versions(),
        'flops': None,
        'measurements': {},
        'ratios': ratios({}),
        'tensorflow_imported': False,
    }
    try:
        report['flops'] = count_flops(settings)
    except Exception as error:
        report['flops'] = {'error': f'{type(error).__name__}: {error}'}
    # Read before the first write replaces the file.
    kept = earlier_results(args.output, report['settings']) if args.resume else {}
    write_json_atomically(args.output, report)
    print(format_header(report['settings']), flush=True)
    run_measurements(args, settings, report, kept)
    report['tensorflow_imported'] |= 'tensorflow' in sys.modules
    report['complete'] = True
    write_json_atomically(args.output, report)
    print(format_summary(report))

    problems = []
    if report['tensorflow_imported']:
        problems.append('TensorFlow was imported; the GPU machines do not have it.')
    flops = report['flops']
    if 'error' in flops or not flops['resnet18_b_16x112x112_matches']:
        problems.append(
            f'The FLOP counter does not give ResNet-18 its {RESNET18_FORWARD_MACS / 1e9} GMAC '
            f'per clip: {flops}.'
        )
    if problems:
        raise SystemExit('\n'.join(problems))


if __name__ == '__main__':
    main()
