"""Frame extraction speed: this project's build against the reference's ffmpeg extraction.

    python -m benchmarks.build_speed [--videos=30] [--frames_per_video=150] [--workers=0]

Both read the same synthetic 320x240 XviD AVI videos (UCF-101's format). This project's build
decodes with PyAV, resizes and JPEG-encodes in worker processes and writes TFRecords through TFDS
(`r3d_jax.data.build_ucf101.build_dataset`). The reference (3D-ResNets-PyTorch,
`utils/video_jpg_ucf101_hmdb51.py`) runs the ffmpeg CLI once per video, writing one JPEG file
per frame (`ffmpeg -i v.avi -vf scale=-1:<size> image_%05d.jpg`); here each ffmpeg runs with one
thread, so that one process is one worker, as in the build. Both are timed with one worker and
with `--workers`, and both are projected to full UCF-101 (about 2.5 M frames) on 16 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

# Imported before any timing, so that no build pays for it.
import tensorflow  # noqa: F401

from r3d_jax.data import build_ucf101, synthetic, ucf101

UCF101_FRAMES = 2_500_000
PROJECTION_CORES = 16


def _build(raw_dir: str, data_dir: str, frame_short_side: int, workers: int) -> tuple[float, float]:
    """Wall seconds of one build, and CPU seconds spent in this (the writing) process."""
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    build_ucf101.build_dataset(
        os.path.join(raw_dir, synthetic.VIDEOS_DIRNAME),
        os.path.join(raw_dir, synthetic.SPLITS_DIRNAME),
        data_dir,
        frame_short_side=frame_short_side,
        workers=workers,
    )
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    main_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    return seconds, main_cpu


def _ffmpeg_one(video: str, out_dir: str, frame_short_side: int) -> None:
    os.makedirs(out_dir)
    subprocess.run(
        ['ffmpeg', '-nostdin', '-loglevel', 'error', '-threads', '1', '-i', video,
         '-vf', f'scale=-1:{frame_short_side}', os.path.join(out_dir, 'image_%05d.jpg')],
        check=True,
    )


def _ffmpeg(videos: list[str], out_dir: str, frame_short_side: int, workers: int) -> float:
    """Wall seconds to extract every video with `workers` ffmpeg processes at a time."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        jobs = [
            pool.submit(_ffmpeg_one, video, os.path.join(out_dir, str(i)), frame_short_side)
            for i, video in enumerate(videos)
        ]
        for job in jobs:
            job.result()
    return time.perf_counter() - start


def _row(method: str, workers: int, frames: int, seconds: float, bytes_per_frame: float) -> str:
    rate = frames / seconds
    return (
        f'{method:<34} {workers:>7} {frames:>7} {seconds:>8.1f} {rate:>9.0f} '
        f'{rate / workers:>11.0f} {bytes_per_frame / 1000:>8.1f}'
    )


def _hours(frames_per_second: float) -> str:
    return f'{UCF101_FRAMES / frames_per_second / 3600:.2f} h'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--videos', type=int, default=30, help='Videos to extract (10 classes).')
    parser.add_argument('--frames_per_video', type=int, default=150)
    parser.add_argument('--frame_short_side', type=int, default=128)
    parser.add_argument('--workers', type=int, default=0, help='0: one per CPU core.')
    parser.add_argument('--work_dir', default='', help='Scratch space; default: a temp dir.')
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
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
    synthetic.generate(
        raw_dir,
        num_classes=num_classes,
        num_groups=synthetic.NUM_SPLITS,
        clips_per_group=-(-args.videos // (num_classes * synthetic.NUM_SPLITS)),
        min_frames=args.frames_per_video,
        max_frames=args.frames_per_video,
        workers=workers,
    )
    videos = sorted(glob.glob(os.path.join(raw_dir, synthetic.VIDEOS_DIRNAME, '*', '*.avi')))
    frames = len(videos) * args.frames_per_video
    print(f'{len(videos)} videos, {frames} frames of 320x240 -> short side {args.frame_short_side}')

    rows, rates = [], {}
    for count in sorted({1, workers}):
        data_dir = os.path.join(work_dir, f'tfds_{count}')
        seconds, main_cpu = _build(raw_dir, data_dir, args.frame_short_side, count)
        directory = ucf101.dataset_dir(data_dir, 1, args.frame_short_side)
        stored = sum(os.path.getsize(f) for f in glob.glob(os.path.join(directory, '*.tfrecord*')))
        rows.append(_row('r3d-jax build (PyAV, JPEG, TFDS)', count, frames, seconds,
                         stored / frames))
        rates[('build', count)] = frames / seconds
        main_ms_per_frame = 1000 * main_cpu / frames
    if ffmpeg is not None:
        for count in sorted({1, workers}):
            out_dir = os.path.join(work_dir, f'ffmpeg_{count}')
            seconds = _ffmpeg(videos, out_dir, args.frame_short_side, count)
            written = glob.glob(os.path.join(out_dir, '*', '*.jpg'))
            stored = sum(os.path.getsize(f) for f in written)
            rows.append(_row('reference: ffmpeg CLI, JPEG files', count, len(written), seconds,
                             stored / len(written)))
            rates[('ffmpeg', count)] = len(written) / seconds

    print(f'\n{"method":<34} {"workers":>7} {"frames":>7} {"seconds":>8} {"frames/s":>9} '
          f'{"per worker":>11} {"kB/frame":>8}')
    print('\n'.join(rows))

    # The build's writing process serialises every frame; with 16 cores it keeps one core and
    # the other 15 decode, and it cannot write faster than its own per-frame cost allows.
    per_worker = rates[('build', 1)]
    writer_limit = 1000 / main_ms_per_frame
    build_rate = min(per_worker * (PROJECTION_CORES - 1), writer_limit)
    print(f'\nWriting process: {main_ms_per_frame:.3f} ms CPU per frame '
          f'(at most {writer_limit:.0f} frames/s).')
    print(f'Projected full UCF-101 ({UCF101_FRAMES / 1e6:.1f} M frames) on {PROJECTION_CORES} '
          f'cores, from one-worker rates:')
    print(f'  r3d-jax build: {build_rate:.0f} frames/s -> {_hours(build_rate)}')
    if ffmpeg is not None:
        ffmpeg_rate = rates[('ffmpeg', 1)] * PROJECTION_CORES
        print(f'  ffmpeg CLI:    {ffmpeg_rate:.0f} frames/s -> {_hours(ffmpeg_rate)}')
    if not args.work_dir:
        shutil.rmtree(work_dir)


if __name__ == '__main__':
    main()
