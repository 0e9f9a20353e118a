"""Throughput of the training input pipeline against the bare cost of decoding its JPEGs.

    python benchmarks/input_pipeline.py   # first run generates and builds its data (~3 min)
    python benchmarks/input_pipeline.py --frame_short_side=112 --jpeg_quality=75

Builds (once, under data/benchmark/) synthetic UCF-101 videos of 100-250 frames, stored at frame
short side 128 and JPEG quality 90 unless the flags say otherwise, then measures, each in a
fresh process pinned to 1 core and to all cores (os.sched_setaffinity, with tf.data's threadpool
and TensorFlow's thread pools sized to match):
- pipeline: clips/s of `create_train_dataset` (16-frame uint8 crops, as training gets them; the
  train step resizes them to 112x112 and flips them on the device);
- raw decode: clips/s of decoding as many whole JPEG frames with tf.io.decode_jpeg (16 per
  clip) and nothing else; the goal is pipeline / raw decode >= 0.7;
- host resize: the pipeline plus the resize to 112x112 and the flip on the host (TensorFlow's
  bilinear resize, antialiased when shrinking), the alternative to doing them on the device;
- on one core, the rate of the first phases alone (reading + Parse + Sample, then + Decode),
  which shows where the pipeline's time goes.
Epochs are like UCF-101's in training: the batch leaves (almost) no video unused, and the
shuffle buffer, refilled at each epoch's start, is the same share of the epoch.
Pipeline and raw decode are measured in alternation, `--rounds` times each per core count; the
table gives their medians and the median and range of the rounds' ratios. Each rate is given
per second of wall time and per second of the process's CPU time; on a busy machine the second
is what dedicated cores would deliver.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL = 0.7
UCF101_TRAIN_VIDEOS = 9537  # Split 1.
WIDTHS = (5, 5, 9, 11, 6, 10, 12)


def benchmark_config(args: argparse.Namespace):
    """The reference recipe's input settings on the benchmark's synthetic dataset."""
    from r3d_jax import defaults

    config = defaults.get_config()
    config.data.data_dir = args.data_dir
    config.data.raw_dir = args.raw_dir
    config.data.frame_short_side = args.frame_short_side
    config.data.jpeg_quality = args.jpeg_quality
    config.data.if_missing = 'synthetic'
    config.data.synthetic.num_classes = args.num_classes
    config.data.synthetic.num_groups = args.num_groups
    config.data.synthetic.clips_per_group = args.clips_per_group
    # UCF-101 videos average ~186 frames; parsing a record costs in proportion.
    config.data.synthetic.min_frames = 100
    config.data.synthetic.max_frames = 250
    config.model.num_classes = args.num_classes
    config.batch_size = args.batch_size
    # Each epoch restarts the pipeline, which fills its shuffle buffer before the first clip.
    # The recipe's buffer is ~11 % of a UCF-101 epoch; the same share of this small one keeps
    # that refill as costly per clip as in training on UCF-101.
    config.input.shuffle_buffer = max(
        1, round(config.input.shuffle_buffer * train_videos(config) / UCF101_TRAIN_VIDEOS)
    )
    return config


def train_videos(config) -> int:
    """Videos in the synthetic dataset's training split (split 1)."""
    from r3d_jax.data import synthetic

    wanted = config.data.synthetic
    test_groups = len(synthetic.tree.held_out_groups(wanted.num_groups, config.data.split_number))
    return wanted.num_classes * (wanted.num_groups - test_groups) * wanted.clips_per_group


def pin_to_cores(num_cores: int) -> None:
    """Restricts this process (and the thread pools TensorFlow sizes from it) to the first
    `num_cores` cores it may use. Must run before TensorFlow is imported."""
    allowed = sorted(os.sched_getaffinity(0))
    if num_cores > len(allowed):
        raise ValueError(f'Asked for {num_cores} cores; this process may use {len(allowed)}.')
    os.sched_setaffinity(0, allowed[:num_cores])


def thread_options(num_cores: int):
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = num_cores
    options.autotune.cpu_budget = num_cores
    return options


def time_batches(dataset, num_clips: int, clips_per_batch: int) -> dict[str, float]:
    """Clips per second of wall time and per second of this process's CPU time, over
    `num_clips` clips after one warm-up batch. On a shared machine the CPU-time rate is what
    a dedicated core would deliver; on an idle one the two agree."""
    batches = dataset.as_numpy_iterator()
    next(batches)
    needed = -(-num_clips // clips_per_batch)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(needed):
        next(batches)
    clips = needed * clips_per_batch
    return {
        'wall': clips / (time.perf_counter() - wall),
        'cpu': clips / (time.process_time() - cpu),
    }


def repeated_epochs(config, host_resize: bool):
    """Training batches (single process, one device), epoch 0 over and over; with
    `host_resize`, each crop is resized to `crop_size` and flipped on the host."""
    import tensorflow as tf

    from r3d_jax.data import input_pipeline

    dataset = input_pipeline.create_train_dataset(
        config, epoch=0, process_index=0, process_count=1, local_device_count=1
    ).repeat()
    if not host_resize:
        return dataset
    size = config.input.crop_size

    def resized(crop):
        side = crop['crop_sizes']
        clip = input_pipeline.resize_bilinear_uint8(crop['crops'][:, :side, :side], size, size)
        clip = tf.cond(crop['flips'], lambda: tf.reverse(clip, axis=[2]), lambda: clip)
        return {'clips': clip, 'labels': crop['labels']}

    return (
        dataset.unbatch()  # [1 device, batch, ...] -> [batch, ...]
        .unbatch()
        .map(resized, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(config.batch_size)
    )


def measure_pipeline(
    config, num_cores: int, num_clips: int, host_resize: bool
) -> dict[str, float]:
    dataset = repeated_epochs(config, host_resize).with_options(thread_options(num_cores))
    return time_batches(dataset, num_clips, config.batch_size)


def measure_raw_decode(config, num_cores: int, num_clips: int) -> dict[str, float]:
    """Clips/s of decoding whole JPEG frames of the dataset, 16 per clip, nothing else."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from r3d_jax.data import input_pipeline

    builder = input_pipeline.load_builder(config)
    frames = builder.as_dataset(
        split=config.data.train_split, decoders={'frames': tfds.decode.SkipDecoding()}
    )
    encoded = []
    for example in frames.as_numpy_iterator():
        encoded.extend(example['frames'][: config.input.clip_length])
        if len(encoded) >= 4096:
            break
    clip_length = config.input.clip_length
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant(encoded))
        .repeat()
        .map(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(clip_length * config.batch_size)
        .with_options(thread_options(num_cores))
    )
    return time_batches(dataset, num_clips, config.batch_size)


def measure_phases(config, num_cores: int, num_clips: int) -> dict[str, dict[str, float]]:
    """Rates of the training pipeline's first phases alone: reading + Parse + Sample, and
    those plus Decode of the crop windows (no padding or batching of pixels)."""
    import tensorflow as tf

    from r3d_jax.data import input_pipeline

    builder = input_pipeline.load_builder(config)
    layout = input_pipeline.BatchLayout(0, 1, 1, config.batch_size)
    shards = input_pipeline.process_shards(builder, config.data.train_split, layout)
    parse = input_pipeline.record_parser(builder)
    sample = input_pipeline.train_sampler(config, epoch=0)
    sampled = input_pipeline.read_records(shards, transform=lambda record: sample(parse(record)))
    decoded = sampled.map(
        lambda clip: input_pipeline.decode_crops(
            clip['frames'], clip['crop_window'], clip['image_width'], config.input.clip_length
        )
    )
    rates = {}
    for name, dataset in (('sample', sampled), ('decode', decoded)):
        # One scalar per clip, batched: the Python loop's cost per batch stays negligible.
        dataset = dataset.repeat().map(lambda _: tf.constant(0)).batch(config.batch_size)
        dataset = dataset.with_options(thread_options(num_cores))
        rates[name] = time_batches(dataset, num_clips, config.batch_size)
    return rates


def run_worker(args: argparse.Namespace) -> None:
    """One measurement, in this process, pinned to `args.cores` cores; prints JSON."""
    pin_to_cores(args.cores)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    os.environ['CUDA_VISIBLE_DEVICES'] = ''
    os.environ['JAX_PLATFORMS'] = 'cpu'
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.cores)
    tf.config.threading.set_intra_op_parallelism_threads(args.cores)
    config = benchmark_config(args)
    if args.worker == 'raw_decode':
        rate = measure_raw_decode(config, args.cores, args.clips)
    elif args.worker == 'phases':
        rate = measure_phases(config, args.cores, args.clips)
    else:
        rate = measure_pipeline(config, args.cores, args.clips, args.worker == 'host_resize')
    print(json.dumps(rate))


def measure_in_subprocess(args: argparse.Namespace, worker: str, cores: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), f'--worker={worker}', f'--cores={cores}']
    command += [f'--{name}={value}' for name, value in shared_flags(args).items()]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=REPO,
        env={**os.environ, 'PYTHONPATH': REPO},
    )
    if result.returncode:
        raise RuntimeError(f'{worker} on {cores} core(s) failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def shared_flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        'data_dir': args.data_dir,
        'raw_dir': args.raw_dir,
        'num_classes': args.num_classes,
        'num_groups': args.num_groups,
        'clips_per_group': args.clips_per_group,
        'batch_size': args.batch_size,
        'clips': args.clips,
        'frame_short_side': args.frame_short_side,
        'jpeg_quality': args.jpeg_quality,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default='data/benchmark/tfds')
    parser.add_argument('--raw_dir', default='data/benchmark/synthetic_ucf101')
    parser.add_argument('--num_classes', type=int, default=20)
    parser.add_argument('--num_groups', type=int, default=3)
    parser.add_argument('--clips_per_group', type=int, default=3)
    parser.add_argument('--frame_short_side', type=int, default=128)
    parser.add_argument('--jpeg_quality', type=int, default=90)
    # 24 divides the 120 training videos: batches of 128 leave 65 of UCF-101's 9,537 unused
    # per epoch, so an epoch here should leave (about) none.
    parser.add_argument('--batch_size', type=int, default=24)
    parser.add_argument('--clips', type=int, default=1500, help='Clips timed per measurement.')
    parser.add_argument(
        '--rounds', type=int, default=3, help='Pipeline and raw decode measurements per core count.'
    )
    parser.add_argument('--worker', choices=('pipeline', 'raw_decode', 'host_resize', 'phases'))
    parser.add_argument('--cores', type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    sys.path.insert(0, REPO)
    from r3d_jax.data import datasets

    config = benchmark_config(args)
    datasets.ensure_dataset(config.data)
    all_cores = len(os.sched_getaffinity(0))
    videos = train_videos(config)
    print(
        f'Training clips 16x112x112 from frames with short side {args.frame_short_side} at JPEG '
        f'quality {args.jpeg_quality}, '
        f'batch {args.batch_size}, {args.clips} clips timed per measurement; epochs of '
        f'{videos} videos ({videos % args.batch_size} unused), shuffle buffer '
        f'{config.input.shuffle_buffer}.'
    )
    columns = ('cores', 'rate', 'pipeline', 'raw decode', 'ratio', 'ratios', 'host resize')
    print(' '.join(f'{name:>{width}}' for name, width in zip(columns, WIDTHS, strict=True)))
    for cores in sorted({1, all_cores}):
        # Alternated, so that a busy spell on the machine weighs on both sides of a ratio.
        rounds = [
            (measure_in_subprocess(args, 'pipeline', cores),
             measure_in_subprocess(args, 'raw_decode', cores))
            for _ in range(args.rounds)
        ]
        host_resize = measure_in_subprocess(args, 'host_resize', cores)
        for rate in ('wall', 'cpu'):
            ratios = sorted(pipeline[rate] / raw[rate] for pipeline, raw in rounds)
            row = (
                cores, rate,
                f'{statistics.median(pipeline[rate] for pipeline, _ in rounds):.0f}',
                f'{statistics.median(raw[rate] for _, raw in rounds):.0f}',
                f'{statistics.median(ratios):.2f}', f'{ratios[0]:.2f}-{ratios[-1]:.2f}',
                f'{host_resize[rate]:.0f}',
            )
            print(' '.join(f'{value:>{width}}' for value, width in zip(row, WIDTHS, strict=True)))
    phases = measure_in_subprocess(args, 'phases', 1)
    print(
        'Where one core goes, clips per CPU-second: reading + Parse + Sample '
        f'{phases["sample"]["cpu"]:.0f}; + Decode of the crop windows '
        f'{phases["decode"]["cpu"]:.0f}; the whole pipeline (+ padding, batching) in the '
        'table.'
    )
    print(
        f'Medians of {args.rounds} rounds of clips per second of wall time (wall) and per second '
        'of CPU time (cpu: what dedicated cores would give on a busy machine); ratios: the '
        f"rounds' lowest and highest. Goal: pipeline / raw decode >= {GOAL}. host resize (one "
        'round): the pipeline also resizing and flipping on the host, as it once did.'
    )


if __name__ == '__main__':
    main()
