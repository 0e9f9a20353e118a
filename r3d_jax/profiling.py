"""Which kernels a profiled step spends its device time in, and which part of the model each is.

`jax.profiler.trace(log_dir)` writes `<log_dir>/plugins/profile/<run>/<host>.xplane.pb`, where
TensorBoard's profile plugin reads it (jax 0.10 also writes a `.trace.json.gz` beside it; other
versions need not). `jax.profiler.ProfileData` reads the XPlane file without TensorFlow. On a GPU
its device planes (`/device:GPU:<n>`) hold one line per CUDA stream whose events are kernels and
copies, each with the HLO instruction it ran for (`hlo_op`) and that instruction's module
(`hlo_module`); on a CPU the host plane holds the XLA thunks, with the same stats.

An HLO instruction is placed in the model by the compiled module's text
(`jitted.lower(...).compile().as_text()`): its `op_name` carries Flax's module path
(`.../layer2_0/conv1/conv_general_dilated`, under `transpose(...)` in the backward pass), cuDNN's
custom-call targets tell forward, input-gradient (dgrad) and weight-gradient (wgrad) convs apart,
and the stack frames of its metadata name the Python functions that made it (the crop resize,
the max pool, the loss, the optimiser).
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

_INSTRUCTION = re.compile(r'^\s+(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<rest>.*)$')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?(?P<name>[\w.\-]+)\s.*\{\s*$')
_MODULE = re.compile(r'^HloModule\s+(?P<name>[\w.\-]+)')
_OPCODE = re.compile(r'\s*(?P<opcode>[a-z][\w\-]*)\(')
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]*)"')
_SOURCE_FILE = re.compile(r'source_file="(?P<file>[^"]*)"')
_STACK_FRAME = re.compile(r'stack_frame_id=(?P<id>\d+)')
_TARGET = re.compile(r'custom_call_target="(?P<target>[^"]*)"')
_CALLS = re.compile(r'calls=(?P<calls>\{[^}]*\}|%?[\w.\-]+)')
_TABLE_ROW = re.compile(r'^(?P<id>\d+)\s+(?P<value>.*)$')
_FIELD = re.compile(r'(\w+)=(\d+)')
_HLO_OP_ANNOTATION = re.compile(r'hlo_op=(?P<op>[\w.\-]+)')
# A stage's modules: ResNet-like blocks `layer2_0`, DenseNet's `denseblock2` and `transition2`.
_STAGE = re.compile(r'^(?:layer|denseblock|transition)(?P<stage>\d+)(?:_\d+)?$')
_STEM_MODULES = ('conv1', 'bn1', 'conv0', 'norm0')
_HEAD_MODULES = ('fc', 'classifier')
_CLASS_NAME = re.compile(r'^[A-Z]\w*$')
TABLES = ('FileNames', 'FunctionNames', 'FileLocations', 'StackFrames')

# cuDNN conv custom calls, by what they compute.
CONV_TARGETS = {
    '__cudnn$convForward': 'forward',
    '__cudnn$convBiasActivationForward': 'forward',
    '__cudnn$convBackwardInput': 'dgrad',
    '__cudnn$convBackwardFilter': 'wgrad',
}
# Python functions or files (matched within each stack entry) whose operations are a part of
# the step of their own; the first match wins.
SOURCE_PARTS = (
    ('CropResize.__call__', 'crop resize'),
    ('crop_resize.py', 'crop resize'),
    ('max_pool.py', 'max pool'),
    ('cross_entropy_loss', 'loss'),
    ('optimizers.py', 'optimizer'),
    ('optax', 'optimizer'),
)
COPY_OPCODES = ('copy', 'transpose', 'copy-start', 'copy-done')
# Lines of a device plane that summarise its streams rather than add to them.
DERIVED_LINES = (
    'XLA Ops', 'XLA Modules', 'Steps', 'Framework Ops', 'Framework Name Scope', 'Source code',
    'TensorFlow Ops', 'TensorFlow Name Scope', 'Launch Stats', 'XLA TraceMe',
)
# Kernel names of library kernels that name no HLO instruction, by what they are.
KERNEL_NAME_PARTS = (
    ('wgrad', 'conv wgrad'),
    ('dgrad', 'conv dgrad'),
    ('nchwToNhwc', 'transposes/copies'),
    ('nhwcToNchw', 'transposes/copies'),
    ('transpose', 'transposes/copies'),
    ('fprop', 'conv forward'),
    ('conv', 'conv'),
    ('memcpy', 'memory copies'),
    ('memset', 'memory copies'),
)


# ---------------------------------------------------------------------------------------------
# The compiled module's text.


@dataclasses.dataclass(frozen=True)
class HloOp:
    """One HLO instruction of a compiled module, as far as its text says."""

    name: str
    opcode: str
    target: str  # The custom-call target; '' for other opcodes.
    op_name: str  # Metadata: the JAX primitive under its named scopes.
    sources: tuple[str, ...]  # Function names and files on its metadata's stack.
    calls: tuple[str, ...]  # The computations it calls (a fusion's fused computation).


@dataclasses.dataclass(frozen=True)
class HloModule:
    name: str
    ops: dict[str, HloOp]
    computations: dict[str, tuple[str, ...]]  # Computation -> its instructions' names.


def _stack_frames(lines: Sequence[str]) -> dict[int, tuple[str, ...]]:
    """stack_frame_id -> the function names and files of the frames it chains to."""
    sections: dict[str, dict[int, str]] = collections.defaultdict(dict)
    section = ''
    for line in lines:
        if line in TABLES:
            section = line
            continue
        match = _TABLE_ROW.match(line) if section else None
        if match:
            sections[section][int(match['id'])] = match['value'].strip().strip('"')
        else:
            section = ''
    files, functions = sections['FileNames'], sections['FunctionNames']
    locations = {}
    for key, value in sections['FileLocations'].items():
        fields = {name: int(number) for name, number in _FIELD.findall(value)}
        locations[key] = (
            files.get(fields.get('file_name_id', 0), ''),
            functions.get(fields.get('function_name_id', 0), ''),
        )
    links = {
        key: {name: int(number) for name, number in _FIELD.findall(value)}
        for key, value in sections['StackFrames'].items()
    }
    # jaxlib 0.10 prints each parent as its id + 1 (a root as 1, not 0): seen as no parent 0.
    parents = [link.get('parent_frame_id', 0) for link in links.values()]
    offset = 1 if parents and min(parents) >= 1 else 0
    frames = {}
    for frame in links:
        names: list[str] = []
        seen, current = set(), frame
        while current in links and current not in seen:
            seen.add(current)
            file, function = locations.get(links[current].get('file_location_id', 0), ('', ''))
            names += [function, file]
            current = links[current].get('parent_frame_id', 0) - offset
        frames[frame] = tuple(name for name in names if name)
    return frames


def _opcode(rest: str) -> str:
    """The opcode that follows an instruction's shape, which may be a (nested) tuple."""
    end = rest.find(' ')
    if rest.startswith('('):
        depth = 0
        for position, character in enumerate(rest):
            depth += {'(': 1, ')': -1}.get(character, 0)
            if depth == 0:
                end = position + 1
                break
    match = _OPCODE.match(rest, max(end, 0))
    return match['opcode'] if match else ''


def parse_hlo_module(hlo_text: str) -> HloModule:
    """The instructions of a module's text (`compiled.as_text()`), fused computations' too."""
    lines = hlo_text.splitlines()
    module = next((m['name'] for m in map(_MODULE.match, lines[:1]) if m), '')
    frames = _stack_frames(lines)
    ops: dict[str, HloOp] = {}
    computations: dict[str, list[str]] = collections.defaultdict(list)
    computation = ''
    for line in lines:
        match = _INSTRUCTION.match(line)
        if not match:
            header = _COMPUTATION.match(line)
            computation = header['name'] if header else computation
            continue
        rest = match['rest']
        op_name, target = _OP_NAME.search(rest), _TARGET.search(rest)
        frame, source_file = _STACK_FRAME.search(rest), _SOURCE_FILE.search(rest)
        sources = frames.get(int(frame['id']), ()) if frame else ()
        if source_file:
            sources += (source_file['file'],)
        calls = _CALLS.search(rest)
        ops[match['name']] = HloOp(
            name=match['name'],
            opcode=_opcode(rest),
            target=target['target'] if target else '',
            op_name=op_name['op_name'] if op_name else '',
            sources=sources,
            calls=tuple(re.findall(r'[\w.\-]+', calls['calls'])) if calls else (),
        )
        computations[computation].append(match['name'])
    return HloModule(module, ops, {name: tuple(names) for name, names in computations.items()})


# ---------------------------------------------------------------------------------------------
# Where an instruction belongs.


def _unwrap(segment: str) -> str:
    """'transpose(jvp(ResNet3D))' -> 'ResNet3D'; '(psum:psum:transpose(jvp(ResNet3D))' (a
    collective's combined name) likewise."""
    return segment.rsplit('(', 1)[-1].strip(')')


def model_place(op_name: str) -> tuple[str, str] | None:
    """(where, what) of an op of the model by its Flax module path, e.g. ('stage 2', 'conv');
    None outside the model (no module class name in the path). Method scopes such as
    `ResNet3D.reference_stem` or `layer2_0.add_shortcut` are skipped."""
    segments = [_unwrap(segment) for segment in op_name.split('/')]
    root = next((i for i, s in enumerate(segments) if _CLASS_NAME.match(s)), None)
    if root is None:
        return None
    scopes = segments[root + 1 : -1]
    path = [scope for scope in scopes if '.' not in scope]
    stages = [match['stage'] for match in map(_STAGE.match, path) if match]
    if stages:
        where = f'stage {stages[0]}'
    elif path and path[0] in _STEM_MODULES:
        where = 'stem'
    elif path and path[0] in _HEAD_MODULES:
        where = 'classifier'
    elif not path and any(scope.endswith('.normalise') for scope in scopes):
        return 'input', 'normalisation'
    else:
        where = 'model'
    if 'downsample' in path:
        what = 'shortcut'
    elif any(re.fullmatch(r'conv\d*', s) for s in path):
        what = 'conv'
    elif any(re.fullmatch(r'(?:bn|norm)\d*', s) for s in path):
        what = 'BatchNorm'
    else:
        what = 'elementwise' if where != 'classifier' else 'dense'
    return where, what


def _metadata(module: HloModule, op: HloOp) -> tuple[str, tuple[str, ...]]:
    """(op_name, sources) of `op`, or of the first instruction of the computations it calls
    that has them, as a fusion's own metadata may be empty."""
    if op.op_name:
        return op.op_name, op.sources
    for computation in op.calls:
        for name in reversed(module.computations.get(computation, ())):
            inner = module.ops[name]
            if inner.op_name:
                return inner.op_name, inner.sources
    return '', op.sources


def classify(module: HloModule | None, op_name: str, kernel_name: str) -> str:
    """The part of the step an HLO instruction (or, failing that, a kernel) belongs to."""
    op = module.ops.get(op_name) if module else None
    if op is None or module is None:
        lowered = kernel_name.lower()
        for part, category in KERNEL_NAME_PARTS:
            if part.lower() in lowered:
                return f'{category} (unattributed)'
        return 'unattributed'
    name, sources = _metadata(module, op)
    for part, category in SOURCE_PARTS:
        if any(part in source for source in sources):
            return category
    backward = 'transpose(' in name
    place = model_place(name)
    where, what = place if place else ('step' if name else 'unplaced', 'other')
    if op.target in CONV_TARGETS or op.opcode == 'convolution':
        kind = CONV_TARGETS.get(op.target) or ('backward' if backward else 'forward')
        return f'{where} {"shortcut conv" if what == "shortcut" else "conv"} {kind}'
    is_copy = op.opcode in COPY_OPCODES or (
        op.opcode == 'fusion' and re.match(r'^(?:\w+_)?(?:transpose|copy)', op.name)
    )
    if is_copy:
        return f'{where} transposes/copies'
    if op.opcode in ('reduce-window', 'select-and-scatter') and where == 'model':
        return 'max pool'
    if what in ('conv', 'shortcut'):
        what += ': other ops'  # A conv module's casts, pads, slices and sums.
    return f'{where} {what}{" backward" if backward else ""}'


# ---------------------------------------------------------------------------------------------
# The trace.


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    hlo_op: str
    hlo_module: str
    device: str
    start_ns: float
    duration_ns: float


def find_xplane(log_dir: str) -> str:
    """The newest `.xplane.pb` that `jax.profiler.trace(log_dir)` wrote."""
    found = glob.glob(os.path.join(log_dir, 'plugins', 'profile', '*', '*.xplane.pb'))
    if not found:
        raise FileNotFoundError(f'{log_dir}: no plugins/profile/*/*.xplane.pb (a jax trace).')
    return max(found, key=os.path.getmtime)


def _hlo_op(stats: dict[str, Any]) -> str:
    if 'hlo_op' in stats:
        return str(stats['hlo_op'])
    for value in stats.values():
        match = _HLO_OP_ANNOTATION.search(str(value))
        if match:
            return match['op']
    return ''


def trace_kernels(xplane_path: str) -> list[Kernel]:
    """The device's kernels and copies (a GPU's streams), or the host's XLA thunks (a CPU's)."""
    from jax.profiler import ProfileData

    data = ProfileData.from_file(xplane_path)
    device, host = [], []
    for plane in data.planes:
        if plane.name.startswith('/device:'):
            lines = list(plane.lines)
            streams = [line for line in lines if line.name.startswith('Stream')]
            for line in streams or [line for line in lines if line.name not in DERIVED_LINES]:
                for event in line.events:
                    stats = dict(event.stats)
                    device.append(Kernel(
                        event.name, _hlo_op(stats), str(stats.get('hlo_module', '')),
                        plane.name, event.start_ns, event.duration_ns,
                    ))
        elif plane.name.startswith('/host:CPU'):
            for line in plane.lines:
                for event in line.events:
                    stats = dict(event.stats)
                    if 'hlo_op' in stats:
                        host.append(Kernel(
                            event.name, str(stats['hlo_op']), str(stats.get('hlo_module', '')),
                            f'{plane.name}:{stats.get("device_ordinal", 0)}', event.start_ns,
                            event.duration_ns,
                        ))
    return device or host


def _module_for(modules: dict[str, HloModule], name: str, matched: bool) -> HloModule | None:
    """The module a kernel's `hlo_module` names; where no kernel names a known module (a
    version that names modules otherwise), the only module there is."""
    if name in modules:
        return modules[name]
    alone = len(modules) == 1 and (not name or not matched)
    return next(iter(modules.values())) if alone else None


def _kernel_names(module: HloModule) -> dict[str, str]:
    """Instruction names by the names XLA gives their kernels (`loop_add_fusion.3` ->
    `loop_add_fusion_3`): where a kernel lacks its `hlo_op` stat."""
    return {re.sub(r'[.\-]', '_', name): name for name in module.ops}


def kernel_table(
    kernels: Sequence[Kernel], modules: Iterable[HloModule], steps: int, top: int = 25
) -> dict[str, Any]:
    """The `top` kernels by time with their share and part of the step, every part's total, and
    how busy the device was; times per step and device."""
    by_name = {module.name: module for module in modules}
    renamed = {name: _kernel_names(module) for name, module in by_name.items()}
    matched = any(kernel.hlo_module in by_name for kernel in kernels)
    devices = sorted({kernel.device for kernel in kernels})
    scale = 1e-6 / (steps * max(len(devices), 1))  # ns in all -> ms per step and device.
    total_ns = sum(kernel.duration_ns for kernel in kernels) or 1.0
    groups: dict[tuple[str, str, str], list[Kernel]] = collections.defaultdict(list)
    for kernel in kernels:
        module = _module_for(by_name, kernel.hlo_module, matched)
        hlo_op = kernel.hlo_op or (renamed[module.name].get(kernel.name, '') if module else '')
        groups[(kernel.name, hlo_op, kernel.hlo_module)].append(kernel)
    rows, categories = [], collections.Counter()
    attributed_ns = 0.0
    for (name, hlo_op, hlo_module), members in groups.items():
        module = _module_for(by_name, hlo_module, matched)
        category = classify(module, hlo_op, name)
        if module is None and hlo_module:
            category = f'outside the step ({hlo_module})'
        duration = sum(kernel.duration_ns for kernel in members)
        op = module.ops.get(hlo_op) if module else None
        attributed_ns += duration if op else 0.0
        categories[category] += duration
        rows.append({
            'kernel': name,
            'hlo_op': hlo_op,
            'category': category,
            'op_name': _metadata(module, op)[0] if module and op else '',
            'ms_per_step': duration * scale,
            'share': duration / total_ns,
            'calls_per_step': len(members) / (steps * max(len(devices), 1)),
        })
    rows.sort(key=lambda row: -row['ms_per_step'])
    spans = []
    for device in devices:
        on_device = [kernel for kernel in kernels if kernel.device == device]
        start = min(kernel.start_ns for kernel in on_device)
        spans.append(max(kernel.start_ns + kernel.duration_ns for kernel in on_device) - start)
    span_ms = sum(spans) * scale if spans else 0.0
    kernel_ms = total_ns * scale if kernels else 0.0
    return {
        'steps': steps,
        'devices': devices,
        'kernel_ms_per_step': kernel_ms,
        'span_ms_per_step': span_ms,
        'busy_share': kernel_ms / span_ms if span_ms else None,
        'attributed_share': attributed_ns / total_ns if kernels else None,
        'module_names_matched': matched,
        'distinct_kernels': len(rows),
        'kernels': rows[:top],
        'categories': [
            {'category': name, 'ms_per_step': ns * scale, 'share': ns / total_ns}
            for name, ns in categories.most_common()
        ],
    }


def format_kernel_table(table: dict[str, Any]) -> str:
    """The table as a person reads it: kernels, then parts of the step."""
    lines = [
        f'{table["kernel_ms_per_step"]:.3f} ms of kernels per step and device over '
        f'{table["span_ms_per_step"]:.3f} ms of trace ({table["steps"]} steps, '
        f'{len(table["devices"])} device(s)); '
        f'{100 * (table["attributed_share"] or 0):.1f} % of kernel time placed by HLO op.',
        f'{"ms/step":>8} {"share":>6} {"calls":>5}  {"part of the step":<36} kernel (HLO op)',
    ]
    for row in table['kernels']:
        lines.append(
            f'{row["ms_per_step"]:>8.3f} {100 * row["share"]:>5.1f}% '
            f'{row["calls_per_step"]:>5.0f}  {row["category"]:<36} '
            f'{row["kernel"][:90]} ({row["hlo_op"]})'
        )
    lines.append(f'{"ms/step":>8} {"share":>6}  part of the step')
    for row in table['categories']:
        lines.append(f'{row["ms_per_step"]:>8.3f} {100 * row["share"]:>5.1f}%  {row["category"]}')
    return '\n'.join(lines)
