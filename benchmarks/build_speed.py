"""Frame extraction speed: this project's build against the reference's ffmpeg extraction.

    python -m benchmarks.build_speed [--videos=60] [--frames_per_video=150] [--workers=0]

Both read the same synthetic 320x240 XviD AVI videos (UCF-101's format). This project's build
decodes with PyAV, resizes and JPEG-encodes in worker processes and writes TFRecords through TFDS
(`r3d_jax.data.build_ucf101.build_dataset`). The reference (3D-ResNets-PyTorch,
`utils/video_jpg_ucf101_hmdb51.py`) runs the ffmpeg CLI once per video, writing one JPEG file
per frame (`ffmpeg -i v.avi -vf scale=-1:<size> image_%05d.jpg`, its default JPEG quality);
here each ffmpeg runs with one thread, so that one process is one worker, as in the build.

Each is timed with one worker and with `--workers`. Besides wall time, the CPU time of this
process and its children is measured: frames per CPU-second does not depend on what else runs
on the machine, and projects full UCF-101 (about 2.5 M frames) onto 16 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import glob
import importlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import tensorflow_datasets as tfds

from r3d_jax.data import build_ucf101, synthetic, ucf101

UCF101_FRAMES = 2_500_000
PROJECTION_CORES = 16


@dataclasses.dataclass(frozen=True)
class Timing:
    wall: float  # Seconds.
    cpu: float  # CPU seconds of this process and of its children.
    main_cpu: float  # CPU seconds of this process alone.


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _timed(run: Callable[[], None]) -> Timing:
    """Times `run`; children's CPU counts once they are waited for, as pools and runs do."""
    main_before = _cpu_seconds(resource.RUSAGE_SELF)
    children_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    main_cpu = _cpu_seconds(resource.RUSAGE_SELF) - main_before
    children_cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - children_before
    return Timing(wall=wall, cpu=main_cpu + children_cpu, main_cpu=main_cpu)


def _build(sources: dict[str, str], data_dir: str, frame_short_side: int, workers: int) -> None:
    build_ucf101.build_dataset(
        sources['videos_dir'],
        sources['splits_dir'],
        data_dir,
        frame_short_side=frame_short_side,
        workers=workers,
    )


def _ffmpeg_one(video: str, out_dir: str, frame_short_side: int) -> None:
    os.makedirs(out_dir)
    subprocess.run(
        ['ffmpeg', '-nostdin', '-loglevel', 'error', '-threads', '1', '-i', video,
         '-vf', f'scale=-1:{frame_short_side}', os.path.join(out_dir, 'image_%05d.jpg')],
        check=True,
    )


def _ffmpeg(videos: list[str], out_dir: str, frame_short_side: int, workers: int) -> None:
    """Extracts every video with `workers` ffmpeg processes at a time."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = [
            pool.submit(_ffmpeg_one, video, os.path.join(out_dir, str(i)), frame_short_side)
            for i, video in enumerate(videos)
        ]
        for job in jobs:
            job.result()


def _row(method: str, workers: int, frames: int, timing: Timing, stored_bytes: int) -> str:
    return (
        f'{method:<34} {workers:>7} {frames:>7} {timing.wall:>7.1f} {frames / timing.wall:>9.0f} '
        f'{frames / timing.cpu:>10.0f} {stored_bytes / frames / 1000:>8.1f}'
    )


def _hours(frames_per_second: float) -> str:
    return f'{UCF101_FRAMES / frames_per_second / 3600:.2f} h'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--videos', type=int, default=60, help='Videos to extract (10 classes).')
    parser.add_argument('--frames_per_video', type=int, default=150)
    parser.add_argument('--frame_short_side', type=int, default=128)
    parser.add_argument('--workers', type=int, default=0, help='0: one per CPU core.')
    parser.add_argument('--work_dir', default='', help='Scratch space; default: a temp dir.')
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    tfds.disable_progress_bar()
    # TensorFlow writes the records: import it before any timing, so no build pays for it. Not
    # at the top: decoding processes re-import this module and must stay light.
    importlib.import_module('tensorflow')
    ffmpeg = shutil.which('ffmpeg')
    if ffmpeg is None:
        print(
            'ffmpeg is not installed, so the reference extraction cannot be timed; timing this '
            "project's build only. Install it with: apt-get update && apt-get install -y ffmpeg",
            file=sys.stderr,
        )
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='build_speed_')
    raw_dir = os.path.join(work_dir, 'raw')
    num_classes = min(10, args.videos)
    num_groups = synthetic.tree.NUM_SPLITS
    tree = synthetic.generate(
        'ucf101',
        raw_dir,
        num_classes=num_classes,
        num_groups=num_groups,
        clips_per_group=-(-args.videos // (num_classes * num_groups)),
        min_frames=args.frames_per_video,
        max_frames=args.frames_per_video,
        workers=workers,
    )
    videos = sorted(glob.glob(os.path.join(tree.sources['videos_dir'], '*', '*.avi')))
    frames = len(videos) * args.frames_per_video
    print(f'{len(videos)} videos, {frames} frames of 320x240 -> short side {args.frame_short_side}')

    rows, timings = [], {}
    for count in sorted({1, workers}):
        data_dir = os.path.join(work_dir, f'tfds_{count}')
        run_build = functools.partial(_build, tree.sources, data_dir, args.frame_short_side, count)
        timing = _timed(run_build)
        directory = ucf101.dataset_dir(data_dir, 1, args.frame_short_side)
        stored = sum(os.path.getsize(f) for f in glob.glob(os.path.join(directory, '*.tfrecord*')))
        rows.append(_row('r3d-jax build (PyAV, JPEG, TFDS)', count, frames, timing, stored))
        timings[('build', count)] = timing
    if ffmpeg is not None:
        for count in sorted({1, workers}):
            out_dir = os.path.join(work_dir, f'ffmpeg_{count}')
            run = functools.partial(_ffmpeg, videos, out_dir, args.frame_short_side, count)
            timing = _timed(run)
            written = glob.glob(os.path.join(out_dir, '*', '*.jpg'))
            stored = sum(os.path.getsize(f) for f in written)
            rows.append(_row('reference: ffmpeg CLI, JPEG files', count, len(written), timing,
                             stored))
            timings[('ffmpeg', count)] = timing

    print(f'\n{"method":<34} {"workers":>7} {"frames":>7} {"wall s":>7} {"frames/s":>9} '
          f'{"frames/CPUs":>10} {"kB/frame":>8}')
    print('\n'.join(rows))

    # The build's writing process serialises every frame; it keeps one of the 16 cores, and it
    # cannot write faster than its own CPU cost per frame allows.
    build = timings[('build', workers)]
    writer_limit = frames / build.main_cpu
    build_rate = min(frames / build.cpu * PROJECTION_CORES, writer_limit)
    print(f'\nWriting process: {1000 * build.main_cpu / frames:.3f} ms CPU per frame '
          f'(at most {writer_limit:.0f} frames/s).')
    print(f'Projected full UCF-101 ({UCF101_FRAMES / 1e6:.1f} M frames) on {PROJECTION_CORES} '
          'cores, from frames per CPU-second with all workers:')
    print(f'  r3d-jax build: {build_rate:.0f} frames/s -> {_hours(build_rate)}')
    if ffmpeg is not None:
        ffmpeg_rate = frames / timings[('ffmpeg', workers)].cpu * PROJECTION_CORES
        print(f'  ffmpeg CLI:    {ffmpeg_rate:.0f} frames/s -> {_hours(ffmpeg_rate)}')
    if not args.work_dir:
        shutil.rmtree(work_dir)


if __name__ == '__main__':
    main()
