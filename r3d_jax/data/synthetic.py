"""A synthetic dataset in UCF-101's exact on-disk format, for demos and tests.

`generate` writes `<out>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi` (MPEG-4 Part 2 in AVI, fourcc
XVID, 320x240, 25 fps, like the real videos) and `<out>/ucfTrainTestlist/` with `classInd.txt`,
`trainlist0{1,2,3}.txt` and `testlist0{1,2,3}.txt`, split by group as UCF-101 is.

Each class is a motion: the few textured objects of a video drift, swing, orbit, spin or zoom
in a way fixed by the class. Everything a single frame shows (colours, textures, background,
shapes, sizes, positions, orientations) is drawn per video from one distribution for all classes,
so only motion tells classes apart -- what a 3D CNN learns and a frame-level model cannot. The
world wraps around the frame edges, so objects are equally likely anywhere in every class. Each
object mirrors its class's motion left-right at random, so a horizontally flipped clip (the
training recipe's augmentation) still shows its own class: classes differ in up/down, speed,
path shape, zoom and spin relative to the path, never in left versus right.

One UCF-101 quirk is reproduced on purpose: the class `HandstandPushups` (folder and classInd)
stores its videos as `v_HandStandPushups_*.avi`, so readers must take the class from the folder.

    python -m r3d_jax.data.synthetic --output_dir=data/synthetic_ucf101 --num_classes=10
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence

import av
import numpy as np
import tqdm
from PIL import Image, ImageDraw

from r3d_jax import console
from r3d_jax.processes import worker_pool

WIDTH, HEIGHT = 320, 240
FPS = 25
NUM_SPLITS = 3
VIDEOS_DIRNAME = 'UCF-101'
SPLITS_DIRNAME = 'ucfTrainTestlist'
PARAMETERS_FILE = 'synthetic.json'  # The arguments that generated a tree, beside its folders.
# UCF-101 stores this class's files with a capital S, unlike its folder and classInd entry.
FILE_NAME_QUIRKS = {'HandstandPushups': 'HandStandPushups'}
# UCF-101 has 25 groups and tests on 7 of them per split (groups 1-7, 8-14, 15-21).
TEST_GROUP_FRACTION = 7 / 25

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


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Per-frame state of the object: centre (pixels), rotation (degrees), log-size."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    log_size: np.ndarray


def trajectory(motion: Motion, num_frames: int, rng: np.random.Generator) -> Trajectory:
    """Where the object is in each frame; mirror, start state and phases come from `rng`."""
    if rng.random() < 0.5:
        motion = motion.mirrored()
    t = np.arange(num_frames, dtype=np.float64)
    x0, y0 = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
    angle0 = rng.uniform(0, 360)
    phase = rng.uniform(0, 2 * np.pi)
    # Zooming sweeps the log-size through +-ZOOM_SPAN / 2; a still size is drawn from that same
    # range, so the size in a single frame is distributed alike for zooming and other classes.
    offset = rng.uniform(-0.2, 0.2)
    still_size = rng.uniform(-ZOOM_SPAN / 2, ZOOM_SPAN / 2)
    wave = np.sin(2 * np.pi * t / SWING_PERIOD + phase)
    x = x0 + motion.velocity[0] * t + motion.swing[0] * wave
    y = y0 + motion.velocity[1] * t + motion.swing[1] * wave
    if motion.orbit:
        turn = motion.orbit * 2 * np.pi * t / ORBIT_PERIOD + phase
        x = x + ORBIT_RADIUS * np.cos(turn)
        y = y + ORBIT_RADIUS * np.sin(turn)
    # Screen y points down, so a clockwise turn is a negative angle for Pillow.
    angle = angle0 - motion.spin * SPIN_DEGREES * t
    ramp = ZOOM_SPAN * ((t / ZOOM_PERIOD + phase / (2 * np.pi)) % 1 - 0.5)
    log_size = {
        '': np.full_like(t, still_size),
        'expand': ramp,
        'contract': -ramp,
        'pulse': PULSE_AMPLITUDE * np.sin(2 * np.pi * t / PULSE_PERIOD + phase),
    }[motion.zoom] + offset
    return Trajectory(x=x % WIDTH, y=y % HEIGHT, angle=angle % 360, log_size=log_size)


def _contrasting_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` colours spread around the colour cube from one random colour."""
    base = rng.uniform(0, 256, size=3)
    shifts = np.arange(count)[:, None] * (256 / count) + rng.uniform(-30, 30, size=(count, 3))
    return ((base + shifts) % 256).astype(np.uint8)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A high-contrast pattern (checkers, stripes or blocks) that makes motion visible."""
    yy, xx = np.mgrid[0:height, 0:width]
    cell = rng.uniform(14, 28)  # Coarse enough to survive downscaling to ~32 px frames.
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


def _background(rng: np.random.Generator) -> Image.Image:
    """A smooth, low-contrast random colour field: the scene the object moves over."""
    grid = rng.uniform(40, 216, size=(rng.integers(2, 5), rng.integers(2, 6), 3))
    small = Image.fromarray(grid.astype(np.uint8))
    field = np.asarray(small.resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32)
    grain = rng.normal(0, 6, size=(HEIGHT // 4, WIDTH // 4, 1)).repeat(4, 0).repeat(4, 1)
    return Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))


def _sprite(rng: np.random.Generator) -> Image.Image:
    """A textured object of random shape, with an alpha mask, about a third of the height."""
    size = int(rng.uniform(80, 120))
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
    sprite = Image.fromarray(_texture(rng, size, size)).convert('RGBA')
    sprite.putalpha(mask)
    return sprite


def render_frames(motion: Motion, num_frames: int, seed: Sequence[int]) -> np.ndarray:
    """The frames [T, 240, 320, 3] uint8 of one video; appearance depends on `seed` only.

    Two to four objects, each with its own look and start, all move as `motion` says: the more
    of the frame shows the class's motion, the less a random crop can miss it.
    """
    rng = np.random.default_rng(list(seed))
    background = _background(rng)
    num_objects = rng.integers(2, 5)
    objects = [(_sprite(rng), trajectory(motion, num_frames, rng)) for _ in range(num_objects)]
    frames = np.empty((num_frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = background.copy()
        for sprite, path in objects:
            side = max(2, round(sprite.width * float(np.exp(path.log_size[t]))))
            obj = sprite.resize((side, side), Image.BILINEAR)
            obj = obj.rotate(float(path.angle[t]), resample=Image.BILINEAR, expand=True)
            left = round(path.x[t] - obj.width / 2)
            top = round(path.y[t] - obj.height / 2)
            # The world wraps around: draw the copies that overlap the frame.
            for dx in (-WIDTH, 0, WIDTH):
                for dy in (-HEIGHT, 0, HEIGHT):
                    frame.paste(obj, (left + dx, top + dy), obj)
        frames[t] = np.asarray(frame)
    return frames


def write_avi(path: str, frames: np.ndarray) -> None:
    """Encodes frames as UCF-101 stores them: MPEG-4 Part 2 (fourcc XVID) in AVI, 25 fps."""
    with av.open(path, mode='w', format='avi') as container:
        stream = container.add_stream('mpeg4', rate=FPS)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        stream.bit_rate = 1_000_000
        stream.codec_context.codec_tag = 'XVID'
        stream.codec_context.thread_count = 1  # One encoder thread: identical bytes per seed.
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format='rgb24')
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One video to write: where, which class motion, how long, and its appearance seed."""

    path: str
    motion: Motion
    num_frames: int
    seed: tuple[int, ...]


def _write_video(job: VideoJob) -> None:
    write_avi(job.path, render_frames(job.motion, job.num_frames, job.seed))


def video_file_name(class_name: str, group: int, clip: int) -> str:
    """UCF-101's file name, including its HandStandPushups spelling."""
    return f'v_{FILE_NAME_QUIRKS.get(class_name, class_name)}_g{group:02d}_c{clip:02d}.avi'


def held_out_groups(num_groups: int, split_number: int) -> range:
    """Groups (1-based) held out for testing in a split, as UCF-101 does it (1-7, 8-14, 15-21)."""
    per_split = max(1, round(num_groups * TEST_GROUP_FRACTION))
    return range((split_number - 1) * per_split + 1, split_number * per_split + 1)


def _validate(
    num_classes: int, num_groups: int, clips_per_group: int, min_frames: int, max_frames: int
) -> None:
    available = len(motion_classes())
    if not 1 <= num_classes <= available:
        raise ValueError(f'num_classes must be in [1, {available}], got {num_classes}.')
    if num_groups < NUM_SPLITS:
        raise ValueError(
            f'num_groups must be at least {NUM_SPLITS} (one test group per split), '
            f'got {num_groups}.'
        )
    if clips_per_group < 1:
        raise ValueError(f'clips_per_group must be at least 1, got {clips_per_group}.')
    if not 1 <= min_frames <= max_frames:
        raise ValueError(
            f'Need 1 <= min_frames <= max_frames, got min_frames={min_frames}, '
            f'max_frames={max_frames}.'
        )


def _write_split_files(
    splits_dir: str, class_names: Sequence[str], num_groups: int, videos: list[tuple[str, int, int]]
) -> None:
    """classInd.txt (1-based) and the train/test lists of the three splits.

    `videos` holds (relative path, group, 0-based label) in list order.
    """
    os.makedirs(splits_dir)
    with open(os.path.join(splits_dir, 'classInd.txt'), 'w') as f:
        f.writelines(f'{i + 1} {name}\n' for i, name in enumerate(class_names))
    for split in range(1, NUM_SPLITS + 1):
        held_out = held_out_groups(num_groups, split)
        with (
            open(os.path.join(splits_dir, f'trainlist0{split}.txt'), 'w') as train,
            open(os.path.join(splits_dir, f'testlist0{split}.txt'), 'w') as test,
        ):
            for relative_path, group, label in videos:
                if group in held_out:
                    test.write(f'{relative_path}\n')
                else:
                    train.write(f'{relative_path} {label + 1}\n')


def generate(
    output_dir: str,
    *,
    num_classes: int = 101,
    num_groups: int = 25,
    clips_per_group: int = 4,
    min_frames: int = 12,
    max_frames: int = 60,
    seed: int = 0,
    workers: int = 0,
) -> str:
    """Writes the synthetic UCF-101 tree into `output_dir` (absent or empty) and returns it.

    The tree is written next to `output_dir` and renamed into place only when complete, so an
    interrupted run never leaves a tree that looks whole. `workers=0` uses every CPU core.
    """
    _validate(num_classes, num_groups, clips_per_group, min_frames, max_frames)
    parameters = {
        'num_classes': num_classes,
        'num_groups': num_groups,
        'clips_per_group': clips_per_group,
        'min_frames': min_frames,
        'max_frames': max_frames,
        'seed': seed,
    }
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise FileExistsError(f'{output_dir} exists and is not an empty directory.')
    parent, name = os.path.split(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f'.{name}.incomplete-', dir=parent)
    try:
        motions = motion_classes()[:num_classes]
        lengths = np.random.default_rng([seed, 0]).integers(
            min_frames, max_frames + 1, size=(num_classes, num_groups, clips_per_group)
        )
        jobs, listed = [], []
        for label, motion in enumerate(motions):
            os.makedirs(os.path.join(staging, VIDEOS_DIRNAME, motion.name))
            for group in range(1, num_groups + 1):
                for clip in range(1, clips_per_group + 1):
                    relative_path = f'{motion.name}/{video_file_name(motion.name, group, clip)}'
                    jobs.append(
                        VideoJob(
                            path=os.path.join(staging, VIDEOS_DIRNAME, relative_path),
                            motion=motion,
                            num_frames=int(lengths[label, group - 1, clip - 1]),
                            seed=(seed, 1, label, group, clip),
                        )
                    )
                    listed.append((relative_path, group, label))
        num_workers = min(workers or os.cpu_count() or 1, len(jobs))
        console.phase(f'Generating {len(jobs)} synthetic videos into {output_dir}')
        with (
            worker_pool(num_workers) as pool,
            tqdm.tqdm(total=len(jobs), desc='synthetic videos', unit='video') as progress,
        ):
            futures = [pool.submit(_write_video, job) for job in jobs]
            for done in concurrent.futures.as_completed(futures):
                done.result()
                progress.update()
        _write_split_files(
            os.path.join(staging, SPLITS_DIRNAME), [m.name for m in motions], num_groups, listed
        )
        with open(os.path.join(staging, PARAMETERS_FILE), 'w') as f:
            json.dump(parameters, f, indent=2)
        # Renaming onto an empty directory replaces it; the tree appears whole or not at all.
        os.rename(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def generated_parameters(output_dir: str) -> dict[str, int] | None:
    """The arguments `generate` wrote `output_dir` with, or None if it did not write it."""
    path = os.path.join(output_dir, PARAMETERS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--output_dir', required=True, help='Absent or empty directory.')
    parser.add_argument('--num_classes', type=int, default=101)
    parser.add_argument('--num_groups', type=int, default=25)
    parser.add_argument('--clips_per_group', type=int, default=4)
    parser.add_argument('--min_frames', type=int, default=12)
    parser.add_argument('--max_frames', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=0, help='0: one per CPU core.')
    args = parser.parse_args(argv)
    path = generate(
        args.output_dir,
        num_classes=args.num_classes,
        num_groups=args.num_groups,
        clips_per_group=args.clips_per_group,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        seed=args.seed,
        workers=args.workers,
    )
    print(f'Wrote {path}/{VIDEOS_DIRNAME} and {path}/{SPLITS_DIRNAME}.')


if __name__ == '__main__':
    main()
