"""Dataset build speed on UCF-101-like and Kinetics-like videos, and the reference's extraction.

    python -m benchmarks.build_speed [--videos=60] [--frames_per_video=150] \
        [--kinetics_clips=8] [--workers=0] [--skip=ucf101|kinetics]

A local build has two phases, timed apart: decoding (PyAV decode, resize, JPEG encode in worker
processes, into the resumable build cache: `build_cache.fill`, as `datasets.build_dataset` runs
it) and writing (the build run again finds every chunk decoded, and TFDS serialises, shuffles
and writes the TFRecords in this one process). Besides wall time, the CPU time of this process
and its children is measured: frames per CPU-second does not depend on what else runs on the
machine. Projections assume decoding scales linearly with cores (it is one process per core,
nothing shared) and writing does not scale (one process).

- UCF-101-like: synthetic 320x240 XviD AVIs at 25 fps (the synthetic UCF-101), projected onto
  full UCF-101 (about 2.5 M frames). The reference (3D-ResNets-PyTorch,
  `utils/video_jpg_ucf101_hmdb51.py`) runs the ffmpeg CLI once per video, writing one JPEG file
  per frame (`ffmpeg -i v.avi -vf scale=-1:<size> image_%05d.jpg`); it is timed too when ffmpeg
  is installed, each ffmpeg with one thread, so that one process is one worker.
- Kinetics-like: 10 s H.264 MP4 clips at 30 fps, half 640x360 and half 340x256, in label
  folders with their CSVs (`synthetic.generate_kinetics_benchmark`), projected onto
  Kinetics-400's ~240 k training clips of ~300 frames.
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

from r3d_jax import defaults
from r3d_jax.data import build_cache, layouts, synthetic
from r3d_jax.data.synthetic import kinetics as synthetic_kinetics

UCF101_FRAMES = 2_500_000
KINETICS400_FRAMES = 240_000 * 300
PROJECTION_CORES = 16


@dataclasses.dataclass(frozen=True)
class Timing:
    wall: float  # Seconds.
    cpu: float  # CPU seconds of this process and of its children.
    main_cpu: float  # CPU seconds of this process alone.


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _timed(run: Callable[[], object]) -> Timing:
    """Times `run`; children's CPU counts once they are waited for, as pools and runs do."""
    main_before = _cpu_seconds(resource.RUSAGE_SELF)
    children_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    main_cpu = _cpu_seconds(resource.RUSAGE_SELF) - main_before
    children_cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - children_before
    return Timing(wall=wall, cpu=main_cpu + children_cpu, main_cpu=main_cpu)


def _build_phases(data, sources: dict[str, str], workers: int) -> tuple[Timing, Timing]:
    """(decode, write) timings of one local build of `config.data` from `sources`."""
    from r3d_jax.data import datasets  # TensorFlow: not in decoding processes (see main).

    layout = layouts.get(data.dataset)
    contents = layout.read_contents(datasets.check_sources(layout, sources), data)
    decoding = build_cache.Decoding(data.frame_short_side, data.jpeg_quality)
    cache = datasets.cache_dir(data)
    os.makedirs(cache)
    plan = build_cache.plan_chunks(contents, decoding, cache, build_cache.DEFAULT_CHUNK_SIZE)
    decode = _timed(functools.partial(build_cache.fill, plan, decoding, workers))
    write = _timed(functools.partial(datasets.build_dataset, data, sources, workers=workers))
    return decode, write


def _stored_bytes(data) -> int:
    from r3d_jax.data import datasets

    shards = glob.glob(os.path.join(datasets.dataset_dir(data), '*.tfrecord*'))
    return sum(os.path.getsize(f) for f in shards)


def _row(method: str, workers: int, frames: int, timing: Timing, stored_bytes: int = 0) -> str:
    stored = f'{stored_bytes / frames / 1000:.1f}' if stored_bytes else '-'
    return (
        f'{method:<36} {workers:>7} {frames:>7} {timing.wall:>7.1f} {frames / timing.wall:>9.0f} '
        f'{frames / timing.cpu:>10.0f} {stored:>8}'
    )


HEADER = (f'{"phase":<36} {"workers":>7} {"frames":>7} {"wall s":>7} {"frames/s":>9} '
          f'{"frames/CPUs":>10} {"kB/frame":>8}')


def _projection(name: str, total_frames: int, frames: int, decode: Timing, write: Timing) -> str:
    """The build time of `total_frames` on PROJECTION_CORES, from one measured build."""
    decode_rate = frames / decode.cpu * PROJECTION_CORES  # Linear in cores, assumed.
    write_rate = frames / write.main_cpu  # One process.
    hours = total_frames / decode_rate / 3600 + total_frames / write_rate / 3600
    return (
        f'Projected {name} ({total_frames / 1e6:.1f} M frames) on {PROJECTION_CORES} cores: '
        f'decoding {decode_rate:.0f} frames/s ({frames / decode.cpu:.0f} per core, linear '
        f'scaling assumed), writing {write_rate:.0f} frames/s (one process) -> {hours:.2f} h.'
    )


def _data_config(dataset: str, data_dir: str, frame_short_side: int):
    data = defaults.get_config().data
    data.dataset = dataset
    data.data_dir = data_dir
    data.frame_short_side = frame_short_side
    return data


# ---------------------------------------------------------------------------------------------
# UCF-101-like videos, and the reference's ffmpeg extraction.


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


def ucf101_like(args: argparse.Namespace, work_dir: str, workers: int) -> None:
    num_classes = min(10, args.videos)
    num_groups = synthetic.tree.NUM_SPLITS
    tree = synthetic.generate(
        'ucf101',
        os.path.join(work_dir, 'ucf101_raw'),
        num_classes=num_classes,
        num_groups=num_groups,
        clips_per_group=-(-args.videos // (num_classes * num_groups)),
        min_frames=args.frames_per_video,
        max_frames=args.frames_per_video,
        workers=workers,
    )
    videos = sorted(glob.glob(os.path.join(tree.sources['videos_dir'], '*', '*.avi')))
    frames = len(videos) * args.frames_per_video
    print(f'\nUCF-101-like: {len(videos)} videos, {frames} frames of 320x240 -> short side '
          f'{args.frame_short_side}')
    rows, phases = [], {}
    for count in sorted({1, workers}):
        data = _data_config('ucf101', os.path.join(work_dir, f'ucf101_{count}'),
                            args.frame_short_side)
        decode, write = _build_phases(data, tree.sources, count)
        rows.append(_row('r3d-jax decode (PyAV, JPEG)', count, frames, decode))
        rows.append(_row('r3d-jax write (TFDS)', 1, frames, write, _stored_bytes(data)))
        phases[count] = (decode, write)
    if shutil.which('ffmpeg') is None:
        print('ffmpeg is not installed, so the reference extraction is not timed. Install it '
              'with: apt-get update && apt-get install -y ffmpeg', file=sys.stderr)
    else:
        for count in sorted({1, workers}):
            out_dir = os.path.join(work_dir, f'ffmpeg_{count}')
            timing = _timed(functools.partial(_ffmpeg, videos, out_dir, args.frame_short_side,
                                              count))
            written = glob.glob(os.path.join(out_dir, '*', '*.jpg'))
            stored = sum(os.path.getsize(f) for f in written)
            rows.append(_row('reference: ffmpeg CLI, JPEG files', count, len(written), timing,
                             stored))
    print(HEADER)
    print('\n'.join(rows))
    print(_projection('full UCF-101', UCF101_FRAMES, frames, *phases[workers]))


# ---------------------------------------------------------------------------------------------
# Kinetics-like clips.


def kinetics_like(args: argparse.Namespace, work_dir: str, workers: int) -> None:
    sources = synthetic.generate_kinetics_benchmark(
        os.path.join(work_dir, 'kinetics_raw'), args.kinetics_clips, workers=workers
    ).sources
    seconds, fps = synthetic_kinetics.BENCHMARK_SECONDS, synthetic_kinetics.BENCHMARK_FPS
    frames = args.kinetics_clips * seconds * fps
    sizes = ' and '.join(f'{w}x{h}' for w, h in synthetic_kinetics.BENCHMARK_SIZES)
    print(f'\nKinetics-like: {args.kinetics_clips} H.264 clips of {seconds} s at {fps} fps '
          f'({sizes}), {frames} frames -> short side {args.frame_short_side}')
    rows, phases = [], {}
    for count in sorted({1, workers}):
        data = _data_config('kinetics', os.path.join(work_dir, f'kinetics_{count}'),
                            args.frame_short_side)
        decode, write = _build_phases(data, sources, count)
        rows.append(_row('r3d-jax decode (PyAV, JPEG)', count, frames, decode))
        rows.append(_row('r3d-jax write (TFDS)', 1, frames, write, _stored_bytes(data)))
        total = Timing(decode.wall + write.wall, decode.cpu + write.cpu, 0.0)
        rows.append(_row('r3d-jax build, both phases', count, frames, total, _stored_bytes(data)))
        phases[count] = (decode, write)
    print(HEADER)
    print('\n'.join(rows))
    print(_projection('Kinetics-400 training set', KINETICS400_FRAMES, frames, *phases[workers]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--videos', type=int, default=60, help='UCF-101-like videos (10 classes).')
    parser.add_argument('--frames_per_video', type=int, default=150)
    parser.add_argument('--kinetics_clips', type=int, default=8)
    parser.add_argument('--frame_short_side', type=int, default=128)
    parser.add_argument('--workers', type=int, default=0, help='0: one per CPU core.')
    parser.add_argument('--skip', choices=('ucf101', 'kinetics'), default=None)
    parser.add_argument('--work_dir', default='', help='Scratch space; default: a temp dir.')
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    # TensorFlow writes the records: import it before any timing, so no build pays for it. Not
    # at the top: decoding processes re-import this module (as `__mp_main__`) and must stay
    # light, or each would load TensorFlow.
    importlib.import_module('tensorflow')
    importlib.import_module('tensorflow_datasets').disable_progress_bar()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='build_speed_')
    print(f'{os.cpu_count()} CPU cores, {workers} decoding workers.')
    if args.skip != 'ucf101':
        ucf101_like(args, work_dir, workers)
    if args.skip != 'kinetics':
        kinetics_like(args, work_dir, workers)
    if not args.work_dir:
        shutil.rmtree(work_dir)


if __name__ == '__main__':
    main()
