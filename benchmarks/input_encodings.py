"""Host cores a GPU's train step needs at each frame encoding, and what each does to the crops.

    python benchmarks/input_encodings.py [--encodings=128:90,128:75,128:60,112:90,112:75] \
        [--rounds=3] [--output=input_encodings.json]

An encoding is the frame short side and JPEG quality a dataset is built with
(`--frame_short_side`, `--jpeg_quality` of `python -m r3d_jax.data.build`; the same fields of
`config.data`). For each, on the synthetic UCF-101 of `benchmarks/input_pipeline.py` (the same
videos; each encoding's dataset is built once under data/benchmark/), it measures:
- bytes: the mean stored size of a frame;
- clips per core: the training pipeline's clips per CPU-second on one core, as
  `benchmarks/input_pipeline.py` measures it (a fresh process each round; rounds alternate
  between the encodings, so that a busy spell weighs on all of them), median of the rounds;
- crop error: the training crops of sampled frames (every scale of `config.input.scales` at
  the centre and the four corners, cut and resized to 112x112 with PIL's bilinear filter, as
  the train step does), mean absolute difference in pixel values (0-255), against the same
  crops of the same frames before JPEG (the encoding's JPEG error, also as PSNR) and against
  the crops of the first encoding (today's default).
An encoding keeps the crops within JPEG tolerance of the first one when its crops differ from
the first one's by no more than the first one's JPEG error. The table gives, for
each, the host cores that a train step needs at 3,541 clips/s (the recipe's step measured on an
H200) and at 4,650 clips/s (twice PyTorch's best), at the measured rate of one core and assuming
the pipeline scales linearly with cores (as it does per CPU-second from 1 to 2 cores in
`benchmarks/input_pipeline.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import io
import json
import math
import os
import statistics
import sys

import input_pipeline as pipeline_benchmark
import numpy as np

REPO = pipeline_benchmark.REPO
STEP_RATES = {'H200 step': 3541, '2x PyTorch': 4650}  # Clips/s the host must supply.
FRAMES_PER_VIDEO = 4  # Sampled frames per video for the crop comparison.


@dataclasses.dataclass(frozen=True)
class Encoding:
    frame_short_side: int
    jpeg_quality: int

    @classmethod
    def parse(cls, text: str) -> Encoding:
        side, quality = text.split(':')
        return cls(int(side), int(quality))

    def __str__(self) -> str:
        return f'{self.frame_short_side}:{self.jpeg_quality}'


def crop_boxes(width: int, height: int, scales: list[float]) -> list[tuple[int, int, int]]:
    """The training crops of a `width` x `height` frame as (left, top, side) in pixels: each
    scale of the short side at the centre and the four corners, as the input pipeline cuts
    them. Every frame size lists its crops in the same order, so they correspond."""
    boxes = []
    for side in (int(np.floor(min(width, height) * np.float64(scale))) for scale in scales):
        right, bottom = width - side, height - side
        corners = [(right // 2, bottom // 2), (0, 0), (right, 0), (0, bottom), (right, bottom)]
        boxes.extend((left, top, side) for left, top in corners)
    return boxes


def crops(frame: np.ndarray, scales: list[float], size: int) -> np.ndarray:
    """uint8 [crops, size, size, 3]: the training crops of `frame`, each cut and then resized
    with PIL's bilinear filter, as the train step resizes them (`r3d_jax.crop_resize`)."""
    from PIL import Image

    height, width = frame.shape[:2]
    return np.stack([
        np.asarray(
            Image.fromarray(frame[top:top + side, left:left + side]).resize(
                (size, size), Image.BILINEAR
            )
        )
        for left, top, side in crop_boxes(width, height, scales)
    ])


def stored_frame(frame: np.ndarray, encoding: Encoding) -> tuple[np.ndarray, np.ndarray, int]:
    """A video frame as a dataset of `encoding` stores it: resized with ffmpeg's bicubic
    scaler (returned as such), JPEG-encoded as the builder does, decoded; and its size in
    bytes."""
    import av
    from PIL import Image

    from r3d_jax.data import video_decoding

    height, width = frame.shape[:2]
    new_width, new_height = video_decoding.frame_size(width, height, encoding.frame_short_side)
    resized = av.VideoFrame.from_ndarray(frame, format='rgb24').reformat(
        width=new_width, height=new_height, format='rgb24', interpolation='BICUBIC'
    ).to_ndarray()
    encoded = video_decoding.encode_frame(resized, encoding.jpeg_quality)
    decoded = np.asarray(Image.open(io.BytesIO(encoded)).convert('RGB'))
    return resized, decoded, len(encoded)


def source_frames(videos: list[str]) -> list[np.ndarray]:
    """`FRAMES_PER_VIDEO` frames spread over each video, decoded at full resolution."""
    import av

    frames = []
    for path in videos:
        with av.open(path) as container:
            decoded = [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]
        picks = np.linspace(0, len(decoded) - 1, FRAMES_PER_VIDEO).round().astype(int)
        frames.extend(decoded[index] for index in picks)
    return frames


def crop_errors(
    frames: list[np.ndarray], encodings: list[Encoding], scales: list[float], size: int
) -> dict[Encoding, dict[str, float]]:
    """Per encoding: mean stored bytes per frame and the crop errors of the module docstring
    (against the same frames before JPEG, and against the first encoding's crops)."""
    sums = {encoding: {'bytes': 0.0, 'jpeg': 0.0, 'squared': 0.0, 'first': 0.0}
            for encoding in encodings}
    for frame in frames:
        first = None
        for encoding in encodings:
            resized, decoded, size_bytes = stored_frame(frame, encoding)
            lossless = crops(resized, scales, size).astype(np.float64)
            trained_on = crops(decoded, scales, size).astype(np.float64)
            first = trained_on if first is None else first
            total = sums[encoding]
            total['bytes'] += size_bytes
            total['jpeg'] += np.abs(trained_on - lossless).mean()
            total['squared'] += ((trained_on - lossless) ** 2).mean()
            total['first'] += np.abs(trained_on - first).mean()
    count = len(frames)
    return {
        encoding: {
            'bytes_per_frame': total['bytes'] / count,
            'jpeg_error': total['jpeg'] / count,
            'jpeg_psnr': 10 * math.log10(255**2 / (total['squared'] / count)),
            'error_vs_first': total['first'] / count,
        }
        for encoding, total in sums.items()
    }


def pipeline_args(args: argparse.Namespace, encoding: Encoding) -> argparse.Namespace:
    """`benchmarks/input_pipeline.py`'s arguments for this encoding's dataset."""
    return argparse.Namespace(
        data_dir=args.data_dir, raw_dir=args.raw_dir, num_classes=args.num_classes,
        num_groups=args.num_groups, clips_per_group=args.clips_per_group,
        batch_size=args.batch_size, clips=args.clips,
        frame_short_side=encoding.frame_short_side, jpeg_quality=encoding.jpeg_quality,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--encodings', default='128:90,128:75,128:60,112:90,112:75',
                        help='short_side:quality, comma-separated; the first is the baseline.')
    parser.add_argument('--data_dir', default='data/benchmark/tfds')
    parser.add_argument('--raw_dir', default='data/benchmark/synthetic_ucf101')
    parser.add_argument('--num_classes', type=int, default=20)
    parser.add_argument('--num_groups', type=int, default=3)
    parser.add_argument('--clips_per_group', type=int, default=3)
    parser.add_argument('--batch_size', type=int, default=24)
    parser.add_argument('--clips', type=int, default=1500, help='Clips timed per measurement.')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--crop_videos', type=int, default=12,
                        help='Videos whose frames the crop comparison samples.')
    parser.add_argument('--output', default='', help='Also write the results here as JSON.')
    args = parser.parse_args()
    encodings = [Encoding.parse(text) for text in args.encodings.split(',')]
    if len(set(encodings)) != len(encodings):
        parser.error(f'--encodings lists an encoding twice: {args.encodings}')

    sys.path.insert(0, REPO)
    from r3d_jax.data import datasets

    for encoding in encodings:
        config = pipeline_benchmark.benchmark_config(pipeline_args(args, encoding))
        datasets.ensure_dataset(config.data)
    videos = sorted(glob.glob(os.path.join(args.raw_dir, '**', '*.avi'), recursive=True))
    step = max(1, len(videos) // args.crop_videos)
    frames = source_frames(videos[::step][: args.crop_videos])
    scales = list(config.input.scales)
    errors = crop_errors(frames, encodings, scales, config.input.crop_size)

    rates = {encoding: [] for encoding in encodings}
    for round_index in range(args.rounds):
        for encoding in encodings:
            rate = pipeline_benchmark.measure_in_subprocess(
                pipeline_args(args, encoding), 'pipeline', 1
            )
            rates[encoding].append(rate['cpu'])
            print(f'round {round_index + 1}/{args.rounds} {encoding}: {rate["cpu"]:.0f} clips per '
                  'CPU-second', flush=True)

    tolerance = errors[encodings[0]]['jpeg_error']
    rows = []
    for encoding in encodings:
        per_core = statistics.median(rates[encoding])
        row = {
            'frame_short_side': encoding.frame_short_side,
            'jpeg_quality': encoding.jpeg_quality,
            **errors[encoding],
            'clips_per_core': per_core,
            'clips_per_core_rounds': rates[encoding],
            'within_tolerance': bool(errors[encoding]['error_vs_first'] <= tolerance),
            'cores_needed': {name: math.ceil(rate / per_core) for name, rate in STEP_RATES.items()},
        }
        rows.append(row)
    print_table(rows, len(frames), len(scales) * 5)
    if args.output:
        with open(args.output, 'w') as file:
            json.dump({'encodings': rows, 'step_rates': STEP_RATES, 'crop_frames': len(frames)},
                      file, indent=2)
        print(f'Wrote {args.output}')


def print_table(rows: list[dict], num_frames: int, crops_per_frame: int) -> None:
    header = ('encoding', 'bytes', 'clips/core', 'rounds', 'JPEG err', 'PSNR', 'vs first',
              'within', *(f'cores {name}' for name in STEP_RATES))
    widths = (9, 6, 10, 15, 10, 6, 9, 6, *(len(f'cores {name}') for name in STEP_RATES))
    print(' '.join(f'{name:>{width}}' for name, width in zip(header, widths, strict=True)))
    for row in rows:
        rounds = row['clips_per_core_rounds']
        values = (
            f'{row["frame_short_side"]}:{row["jpeg_quality"]}', f'{row["bytes_per_frame"]:.0f}',
            f'{row["clips_per_core"]:.0f}', f'{min(rounds):.0f}-{max(rounds):.0f}',
            f'{row["jpeg_error"]:.2f}', f'{row["jpeg_psnr"]:.1f}',
            f'{row["error_vs_first"]:.2f}', 'yes' if row['within_tolerance'] else 'no',
            *(str(row['cores_needed'][name]) for name in STEP_RATES),
        )
        print(' '.join(f'{value:>{width}}' for value, width in zip(values, widths, strict=True)))
    print(
        f'Crop errors: mean absolute difference (0-255) over {num_frames} frames x '
        f'{crops_per_frame} training crops; JPEG err and PSNR: against the same frames before '
        "JPEG; vs first: against the first encoding's crops; within: vs first is at most the "
        "first encoding's JPEG err. "
        'Cores: host cores for the step rate at the median clips per CPU-second of one core.'
    )


if __name__ == '__main__':
    main()
