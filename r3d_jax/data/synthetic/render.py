"""What every synthetic video shows, and the encoders that store it as the real datasets do.

Each class is a motion: the few textured objects of a video drift, swing, orbit, spin or zoom
in a way fixed by the class. Everything a single frame shows (colours, textures, background,
shapes, sizes, positions, orientations) is drawn per video from one distribution for all classes,
so only motion tells classes apart -- what a 3D CNN learns and a frame-level model cannot. The
world wraps around the frame edges, so objects are equally likely anywhere in every class. Each
object mirrors its class's motion left-right at random, so a horizontally flipped clip (the
training recipe's augmentation) still shows its own class: classes differ in up/down, speed,
path shape, zoom and spin relative to the path, never in left versus right.

Distances are in pixels of a 320x240 frame and scale with the frame's short side, so a video of
any size (landscape or portrait) shows the same motion once resized to a common short side.
Speeds are per frame, whatever the frame rate.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 320, 240  # The size every distance below is given for (UCF-101's).
FPS = 25  # UCF-101's frame rate, `write_avi`'s default.

FAST, SLOW = 14.0, 5.5  # Drift speeds, pixels per frame at 320x240 (over 2x apart).
SWING_AMPLITUDE = 60.0  # Pixels either side of the centre.
SWING_PERIOD = 14.0  # Frames: any clip of 8 frames sees the object turn back.
ORBIT_RADIUS = 70.0
ORBIT_PERIOD = 24.0
SPIN_DEGREES = 20.0  # Per frame.
ZOOM_SPAN = 1.5  # 'expand'/'contract': log-size sweeps this range, then starts over...
ZOOM_PERIOD = 30.0  # ...every this many frames (a sawtooth: 5 % per frame).
PULSE_PERIOD = 10.0
PULSE_AMPLITUDE = 0.45  # Log-size.


@dataclasses.dataclass(frozen=True)
class Motion:
    """How the object moves in every video of one class, up to a left-right mirror."""

    name: str
    velocity: tuple[float, float] = (0.0, 0.0)  # Constant drift, pixels per frame (x, y down).
    swing: tuple[float, float] = (0.0, 0.0)  # Back-and-forth amplitude vector, pixels.
    orbit: int = 0  # Circular path: +1 clockwise on screen, -1 counterclockwise, 0 none.
    spin: int = 0  # Rotation of the object: +1 clockwise, -1 counterclockwise, 0 none.
    zoom: str = ''  # '', 'expand', 'contract' or 'pulse'.

    def mirrored(self) -> Motion:
        """The same motion seen in a left-right mirror."""
        return dataclasses.replace(
            self,
            velocity=(-self.velocity[0], self.velocity[1]),
            swing=(-self.swing[0], self.swing[1]),
            orbit=-self.orbit,
            spin=-self.spin,
        )


# Objects that stay where they are: what a video shows between annotated actions. No class is
# still (every class moves), so a still stretch never looks like any class.
STILL = Motion(name='Still')

_DIAGONAL = math.sqrt(0.5)
# Paths of the object's centre. Mirroring turns clockwise spin into counterclockwise, so on paths
# that a mirror leaves unchanged (up to phase) spin has one class; on paths with a left-right
# sense (drifts with a sideways part, orbits) spinning along the path and against it differ.
_PATHS_WITHOUT_SENSE = {
    'MoveUp': {'velocity': (0.0, -FAST)},
    'MoveDown': {'velocity': (0.0, FAST)},
    'SwingVertical': {'swing': (0.0, SWING_AMPLITUDE)},
    'SwingSideways': {'swing': (SWING_AMPLITUDE, 0.0)},
    'SwingDiagonal': {'swing': (SWING_AMPLITUDE * _DIAGONAL, SWING_AMPLITUDE * _DIAGONAL)},
    'MoveUpSlow': {'velocity': (0.0, -SLOW)},
    'MoveDownSlow': {'velocity': (0.0, SLOW)},
}
_PATHS_WITH_SENSE = {
    'MoveSideways': {'velocity': (FAST, 0.0)},
    'Orbit': {'orbit': 1},
    'MoveUpDiagonal': {'velocity': (FAST * _DIAGONAL, -FAST * _DIAGONAL)},
    'MoveDownDiagonal': {'velocity': (FAST * _DIAGONAL, FAST * _DIAGONAL)},
    'MoveSidewaysSlow': {'velocity': (SLOW, 0.0)},
    'MoveUpDiagonalSlow': {'velocity': (SLOW * _DIAGONAL, -SLOW * _DIAGONAL)},
    'MoveDownDiagonalSlow': {'velocity': (SLOW * _DIAGONAL, SLOW * _DIAGONAL)},
}
# A wheel rolling right turns clockwise: 'SpinAlong' spins as if rolling along the path.
_SPINS = {'': 0, 'Spin': 1, 'SpinAlong': 1, 'SpinAgainst': -1}
_ZOOMS = ('', 'Expand', 'Contract', 'Pulse')
# The ten classes of a small demo, in order: one simple, clearly different motion each.
# HandstandPushups comes second so that even a two-class tree has UCF-101's file name quirk.
_FIRST_CLASSES = (
    'MoveUp',
    'HandstandPushups',
    'MoveSideways',
    'Spin',
    'Expand',
    'Contract',
    'MoveDown',
    'SwingSideways',
    'Orbit',
    'Pulse',
)


def _motion(path: str, spin: str, zoom: str) -> Motion:
    """The motion named by concatenating a path, a spin and a zoom."""
    fields = dict({**_PATHS_WITHOUT_SENSE, **_PATHS_WITH_SENSE}.get(path, {}))
    name = path + spin + zoom
    # UCF-101's HandstandPushups (a body bobbing up and down) lends its name and file quirk.
    return Motion(
        name='HandstandPushups' if name == 'SwingVertical' else name,
        spin=_SPINS[spin],
        zoom=zoom.lower(),
        **fields,
    )


def motion_classes() -> tuple[Motion, ...]:
    """All classes, the ten simplest first; then single paths, spins and zooms, then mixes."""
    combinations = [
        (path, spin)
        for paths, spins in (
            (['', *_PATHS_WITHOUT_SENSE], ('', 'Spin')),
            (list(_PATHS_WITH_SENSE), ('', 'SpinAlong', 'SpinAgainst')),
        )
        for path in paths
        for spin in spins
    ]
    motions = [
        _motion(path, spin, zoom)
        for path, spin in combinations
        for zoom in _ZOOMS
        if path or spin or zoom
    ]
    first = {name: index for index, name in enumerate(_FIRST_CLASSES)}
    motions.sort(key=lambda m: (first.get(m.name, len(first)), _complexity(m)))
    return tuple(motions)


def _complexity(motion: Motion) -> int:
    """How many kinds of movement a motion combines."""
    path = any(motion.velocity) or any(motion.swing) or bool(motion.orbit)
    return int(path) + int(bool(motion.spin)) + int(bool(motion.zoom))


def name_words(name: str) -> list[str]:
    """The words of a CamelCase class name: 'MoveUpSlow' -> ['Move', 'Up', 'Slow']."""
    return re.findall(r'[A-Z][a-z]*', name)


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Per-frame state of the object: centre (pixels), rotation (degrees), log-size."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    log_size: np.ndarray


def trajectory(
    motion: Motion,
    num_frames: int,
    rng: np.random.Generator,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Trajectory:
    """Where the object is in each frame of a `size` (width, height) video; mirror, start
    state and phases come from `rng`."""
    if rng.random() < 0.5:
        motion = motion.mirrored()
    width, height = size
    scale = min(size) / HEIGHT
    t = np.arange(num_frames, dtype=np.float64)
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    angle0 = rng.uniform(0, 360)
    phase = rng.uniform(0, 2 * np.pi)
    # Zooming sweeps the log-size through +-ZOOM_SPAN / 2; a still size is drawn from that same
    # range, so the size in a single frame is distributed alike for zooming and other classes.
    offset = rng.uniform(-0.2, 0.2)
    still_size = rng.uniform(-ZOOM_SPAN / 2, ZOOM_SPAN / 2)
    wave = np.sin(2 * np.pi * t / SWING_PERIOD + phase)
    x = x0 + motion.velocity[0] * scale * t + motion.swing[0] * scale * wave
    y = y0 + motion.velocity[1] * scale * t + motion.swing[1] * scale * wave
    if motion.orbit:
        turn = motion.orbit * 2 * np.pi * t / ORBIT_PERIOD + phase
        x = x + ORBIT_RADIUS * scale * np.cos(turn)
        y = y + ORBIT_RADIUS * scale * np.sin(turn)
    # Screen y points down, so a clockwise turn is a negative angle for Pillow.
    angle = angle0 - motion.spin * SPIN_DEGREES * t
    ramp = ZOOM_SPAN * ((t / ZOOM_PERIOD + phase / (2 * np.pi)) % 1 - 0.5)
    log_size = {
        '': np.full_like(t, still_size),
        'expand': ramp,
        'contract': -ramp,
        'pulse': PULSE_AMPLITUDE * np.sin(2 * np.pi * t / PULSE_PERIOD + phase),
    }[motion.zoom] + offset
    return Trajectory(x=x % width, y=y % height, angle=angle % 360, log_size=log_size)


def _contrasting_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` colours spread around the colour cube from one random colour."""
    base = rng.uniform(0, 256, size=3)
    shifts = np.arange(count)[:, None] * (256 / count) + rng.uniform(-30, 30, size=(count, 3))
    return ((base + shifts) % 256).astype(np.uint8)


def _texture(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """A high-contrast pattern (checkers, stripes or blocks) that makes motion visible."""
    yy, xx = np.mgrid[0:height, 0:width]
    cell = rng.uniform(14, 28) * scale  # Coarse enough to survive downscaling to ~32 px frames.
    style = rng.integers(3)
    colours = _contrasting_colours(rng, 3)
    if style == 0:
        index = ((xx // cell).astype(int) + (yy // cell).astype(int)) % 2
    elif style == 1:
        theta = rng.uniform(0, np.pi)
        index = ((xx * np.cos(theta) + yy * np.sin(theta)) // cell).astype(int) % 3
    else:
        cells = rng.integers(3, size=(int(height // cell) + 1, int(width // cell) + 1))
        index = cells[(yy // cell).astype(int), (xx // cell).astype(int)]
    return colours[index]


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth, low-contrast random colour field: the scene the object moves over."""
    width, height = size
    grid = rng.uniform(40, 216, size=(rng.integers(2, 5), rng.integers(2, 6), 3))
    small = Image.fromarray(grid.astype(np.uint8))
    field = np.asarray(small.resize(size, Image.BICUBIC), dtype=np.float32)
    grain = rng.normal(0, 6, size=(-(-height // 4), -(-width // 4), 1)).repeat(4, 0).repeat(4, 1)
    return Image.fromarray(np.clip(field + grain[:height, :width], 0, 255).astype(np.uint8))


def _sprite(rng: np.random.Generator, scale: float) -> Image.Image:
    """A textured object of random shape, with an alpha mask, about a third of the height."""
    size = int(rng.uniform(80, 120) * scale)
    mask = Image.new('L', (size, size), 0)
    draw = ImageDraw.Draw(mask)
    shape = rng.integers(3)
    if shape == 0:
        draw.ellipse((0, size * rng.uniform(0, 0.25), size - 1, size - 1), fill=255)
    elif shape == 1:
        inset = size * rng.uniform(0, 0.25)
        draw.rectangle((inset, 0, size - 1 - inset, size - 1), fill=255)
    else:
        corners = rng.integers(5, 9)
        angles = (np.arange(corners) + rng.uniform(-0.3, 0.3, corners)) * 2 * np.pi / corners
        radii = size / 2 * rng.uniform(0.6, 1.0, corners)
        centre = size / 2
        points = np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], 1)
        draw.polygon([tuple(p) for p in points], fill=255)
    sprite = Image.fromarray(_texture(rng, size, size, scale)).convert('RGBA')
    sprite.putalpha(mask)
    return sprite


def render_segments(
    segments: Sequence[tuple[Motion, int]],
    seed: Sequence[int],
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> np.ndarray:
    """The frames [T, height, width, 3] uint8 of one video of `size` (width, height) made of
    `segments` (motion, frame count) in order; appearance depends on `seed` only.

    Two to four objects, each with its own look, all move as each segment's motion says: the
    more of the frame shows the motion, the less a random crop can miss it. Each segment starts
    the objects afresh (a cut), with the same background and objects throughout.
    """
    rng = np.random.default_rng(list(seed))
    width, height = size
    scale = min(size) / HEIGHT
    background = _background(rng, size)
    num_objects = rng.integers(2, 5)
    objects = [
        (_sprite(rng, scale), [trajectory(motion, count, rng, size) for motion, count in segments])
        for _ in range(num_objects)
    ]
    frames = np.empty((sum(count for _, count in segments), height, width, 3), dtype=np.uint8)
    start = 0
    for segment, (_, count) in enumerate(segments):
        for t in range(count):
            frame = background.copy()
            for sprite, paths in objects:
                path = paths[segment]
                side = max(2, round(sprite.width * float(np.exp(path.log_size[t]))))
                obj = sprite.resize((side, side), Image.BILINEAR)
                obj = obj.rotate(float(path.angle[t]), resample=Image.BILINEAR, expand=True)
                left = round(path.x[t] - obj.width / 2)
                top = round(path.y[t] - obj.height / 2)
                # The world wraps around: draw the copies that overlap the frame.
                for dx in (-width, 0, width):
                    for dy in (-height, 0, height):
                        frame.paste(obj, (left + dx, top + dy), obj)
            frames[start + t] = np.asarray(frame)
        start += count
    return frames


def render_frames(
    motion: Motion, num_frames: int, seed: Sequence[int], size: tuple[int, int] = (WIDTH, HEIGHT)
) -> np.ndarray:
    """The frames [T, height, width, 3] uint8 of a video showing one motion throughout."""
    return render_segments([(motion, num_frames)], seed, size)


def panning_frames(
    motion: Motion, num_frames: int, seed: Sequence[int], size: tuple[int, int]
) -> np.ndarray:
    """Frames [T, height, width, 3] uint8 of one scene drawn once and shifted by the motion's
    drift each frame: real motion for an encoder at the cost of one copy per frame (for
    long benchmark videos; motions without drift pan sideways)."""
    rng = np.random.default_rng(list(seed))
    width, height = size
    scale = min(size) / HEIGHT
    scene = _background(rng, size)
    for _ in range(rng.integers(2, 5)):
        sprite = _sprite(rng, scale)
        scene.paste(sprite, (int(rng.integers(width)), int(rng.integers(height))), sprite)
    tiled = np.tile(np.asarray(scene), (2, 2, 1))  # Any window of the frame's size wraps.
    dx, dy = motion.velocity if any(motion.velocity) else (FAST, 0.0)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        top, left = round(-dy * scale * t) % height, round(-dx * scale * t) % width
        frames[t] = tiled[top : top + height, left : left + width]
    return frames


# ---------------------------------------------------------------------------------------------
# Encoders.


@dataclasses.dataclass(frozen=True)
class Codec:
    """How a video file is stored: container, encoder and its settings."""

    container: str  # PyAV's format name: 'avi', 'mp4', 'webm'.
    encoder: str  # PyAV's encoder name: 'mpeg4', 'libx264', 'libvpx-vp9'.
    codec_tag: str = ''  # The FourCC an AVI file names its codec by ('XVID', 'DX50').
    bit_rate: int = 0  # Bits per second; 0: the encoder's own rate control.
    options: tuple[tuple[str, str], ...] = ()  # Encoder options.
    # Container options. 'fflags=+bitexact' leaves out what differs between runs (a random
    # segment id in WebM), so the same frames always give the same bytes.
    container_options: tuple[tuple[str, str], ...] = ()


# UCF-101's videos: MPEG-4 Part 2 in AVI with XviD's FourCC.
XVID_AVI = Codec(container='avi', encoder='mpeg4', codec_tag='XVID', bit_rate=1_000_000)
# HMDB-51's: MPEG-4 Part 2 in AVI with DivX 5's FourCC.
DIVX_AVI = Codec(container='avi', encoder='mpeg4', codec_tag='DX50', bit_rate=1_000_000)
_BITEXACT = (('fflags', '+bitexact'),)
# H.264 (x264's 'veryfast' keeps CABAC and B-frames, so decoding costs what it does for
# typical downloaded videos) in MP4, as YouTube-sourced datasets store most videos.
H264_MP4 = Codec(
    container='mp4',
    encoder='libx264',
    options=(('preset', 'veryfast'), ('x264-params', 'threads=1:lookahead-threads=1')),
    container_options=_BITEXACT,
)
# VP9 in WebM, what YouTube downloaders write for some videos.
VP9_WEBM = Codec(
    container='webm', encoder='libvpx-vp9', options=(('deadline', 'realtime'), ('cpu-used', '8')),
    container_options=_BITEXACT,
)


def write_video(path: str, frames: np.ndarray, fps: float | Fraction, codec: Codec) -> None:
    """Encodes frames [T, H, W, 3] uint8 at `fps` into `path` as `codec` says."""
    with av.open(
        path, mode='w', format=codec.container, options=dict(codec.container_options)
    ) as container:
        stream = container.add_stream(codec.encoder, rate=fps, options=dict(codec.options))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        if codec.bit_rate:
            stream.bit_rate = codec.bit_rate
        if codec.codec_tag:
            stream.codec_context.codec_tag = codec.codec_tag
        stream.codec_context.thread_count = 1  # One encoder thread: identical bytes per seed.
        for index, array in enumerate(frames):
            frame = _yuv420p_frame(array)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _yuv420p_frame(rgb: np.ndarray) -> av.VideoFrame:
    """The frame in the encoders' pixel format, the padding at the end of each row zeroed.

    FFmpeg leaves that padding uninitialised, and x264 reads it for frame widths that are not
    a multiple of the row alignment (e.g. 180): left as is, the same frames can encode to
    different bytes from one run to the next.
    """
    frame = av.VideoFrame.from_ndarray(rgb, format='rgb24').reformat(format='yuv420p')
    for plane in frame.planes:
        if plane.line_size > plane.width:
            rows = np.frombuffer(bytes(plane), np.uint8).reshape(plane.height, plane.line_size)
            rows = rows.copy()
            rows[:, plane.width :] = 0
            plane.update(rows.tobytes())
    return frame


def write_avi(path: str, frames: np.ndarray, fps: float | Fraction = FPS) -> None:
    """Encodes frames as UCF-101 stores them: MPEG-4 Part 2 (fourcc XVID) in AVI."""
    write_video(path, frames, fps, XVID_AVI)


def write_mp4(path: str, frames: np.ndarray, fps: float | Fraction) -> None:
    """Encodes frames as H.264 in MP4."""
    write_video(path, frames, fps, H264_MP4)
