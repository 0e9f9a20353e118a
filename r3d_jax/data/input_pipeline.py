"""tf.data input pipelines for training and evaluation on a frames dataset (any layout).

Both pipelines run DMVR's phases in order, and differ only in Sample and Preprocess:

- Parse: a serialized record -> its encoded JPEG frames, label and frame count (Parse and
  Sample run in the reader of each shard, `read_records`).
- Sample: choose the clip's frame indices (and, in training, its crop and flip) and keep only
  those encoded frames, so nothing unused is ever decoded.
- Decode: JPEG -> uint8 pixels (training decodes only the crop window).
- Preprocess: training pads the decoded crop window (one of the reference's multi-scale corner
  crops) to the largest crop side and leaves its resize and flip to the accelerator
  (`r3d_jax.crop_resize`, inside the train step), which does them far faster than the host;
  evaluation resizes the short side to `crop_size`, then takes the centre or three crops.
- Postprocess: batch, pad evaluation batches with `mask` False, add the local-device axis.

Clips leave the pipeline as uint8: normalisation happens on the device, inside the model, so
the host moves a quarter of the bytes. Every random draw is stateless, derived from
(config.seed, epoch, the video's index in the split), and every reordering uses fixed seeds and
a fixed interleave width, so batches do not depend on parallelism or on the machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from r3d_jax.crop_resize import crop_sides
from r3d_jax.data import datasets

CROP_POSITIONS = ('center', 'top_left', 'top_right', 'bottom_left', 'bottom_right')
EVAL_MODES = ('clip', 'video', 'multiview')
# Shards read at once, each by a reader that also parses and samples its records (one core at
# most each): the bound on that work's parallelism. Fixed, never autotuned: the order of
# examples depends on it.
READ_CYCLE_LENGTH = 16

Features = dict[str, tf.Tensor]


class InputPipelineError(RuntimeError):
    """The dataset could not be read: a corrupt shard, an undecodable frame, a bad record."""


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What the trainer needs to know about the built dataset."""

    class_names: list[str]
    num_examples: dict[str, int]


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """How a global batch is split: over processes, then over each process's local devices."""

    process_index: int
    process_count: int
    local_device_count: int
    per_device_batch: int

    @property
    def local_batch(self) -> int:
        return self.local_device_count * self.per_device_batch


# ----------------------------------------------------------------------------------------------
# Dataset-level facts.


def load_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """The built dataset named by `config.data` (a clear error when it is missing)."""
    return datasets.load_builder(config.data)


def dataset_metadata(config: ml_collections.ConfigDict) -> DatasetMetadata:
    """Class names and split sizes, checked against `config.model.num_classes`."""
    builder = load_builder(config)
    class_names = list(builder.info.features['label'].names)
    if len(class_names) != config.model.num_classes:
        raise ValueError(
            f'config.model.num_classes is {config.model.num_classes}, but the dataset in '
            f'{builder.data_dir} has {len(class_names)} classes; set '
            f'--config.model.num_classes={len(class_names)}.'
        )
    num_examples = {name: split.num_examples for name, split in builder.info.splits.items()}
    return DatasetMetadata(class_names=class_names, num_examples=num_examples)


def steps_per_epoch(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
    """Full global batches in one pass over the training split (the remainder is dropped)."""
    steps = num_train_examples // config.batch_size
    if steps == 0:
        raise ValueError(
            f'The training split has {num_train_examples} examples, fewer than one batch of '
            f'config.batch_size={config.batch_size}.'
        )
    return steps


def batch_layout(
    global_batch: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    local_device_count: int | None = None,
) -> BatchLayout:
    """Splits `global_batch` over processes and local devices (JAX's, unless overridden)."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    local_device_count = (
        jax.local_device_count() if local_device_count is None else local_device_count
    )
    if not 0 <= process_index < process_count:
        raise ValueError(f'process_index {process_index} is not in [0, {process_count}).')
    num_devices = process_count * local_device_count
    if global_batch % num_devices:
        raise ValueError(
            f'Batch size {global_batch} does not split evenly over {num_devices} devices '
            f'({process_count} processes x {local_device_count} local devices).'
        )
    return BatchLayout(
        process_index=process_index,
        process_count=process_count,
        local_device_count=local_device_count,
        per_device_batch=global_batch // num_devices,
    )


def process_example_range(
    num_examples: int, process_index: int, process_count: int
) -> tuple[int, int]:
    """[start, end) of this process's examples: disjoint, contiguous, sizes differ by <= 1."""
    base, extra = divmod(num_examples, process_count)
    start = process_index * base + min(process_index, extra)
    return start, start + base + int(process_index < extra)


def check_input_config(config: ml_collections.ConfigDict) -> None:
    """Rejects `config.input` values the pipelines cannot honour, naming the field."""
    inputs = config.input
    if inputs.clip_length < 1 or inputs.temporal_stride < 1 or inputs.crop_size < 1:
        raise ValueError(
            'config.input.clip_length, temporal_stride and crop_size must be positive, got '
            f'{inputs.clip_length}, {inputs.temporal_stride}, {inputs.crop_size}.'
        )
    unknown = [p for p in inputs.crop_positions if p not in CROP_POSITIONS]
    if unknown or not inputs.crop_positions:
        raise ValueError(
            f'config.input.crop_positions {tuple(inputs.crop_positions)} must be a non-empty '
            f'subset of {CROP_POSITIONS}.'
        )
    if not inputs.scales or not all(0 < s <= 1 for s in inputs.scales):
        raise ValueError(f'config.input.scales {tuple(inputs.scales)} must lie in (0, 1].')
    if not 0 <= inputs.flip_probability <= 1:
        raise ValueError(
            f'config.input.flip_probability must be in [0, 1], got {inputs.flip_probability}.'
        )
    if inputs.eval_clips_per_video < 1:
        raise ValueError(
            f'config.input.eval_clips_per_video must be >= 1, got {inputs.eval_clips_per_video}.'
        )
    if inputs.eval_spatial_crops not in (1, 3):
        raise ValueError(
            f'config.input.eval_spatial_crops must be 1 or 3, got {inputs.eval_spatial_crops}.'
        )
    if inputs.multiview_clips < 1:
        raise ValueError(
            f'config.input.multiview_clips must be >= 1, got {inputs.multiview_clips}.'
        )
    if inputs.multiview_crops not in (1, 3):
        raise ValueError(
            f'config.input.multiview_crops must be 1 or 3, got {inputs.multiview_crops}.'
        )


# ----------------------------------------------------------------------------------------------
# Reading records.


@dataclasses.dataclass(frozen=True)
class ProcessShards:
    """The shard reads that yield this process's examples of a split, in split order."""

    split: str
    first_index: int  # Position in the split of the first example read.
    instructions: tuple[tfds.core.utils.shard_utils.FileInstruction, ...]

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(i.filename for i in self.instructions))


def process_shards(
    builder: tfds.core.DatasetBuilder, split: str, layout: BatchLayout
) -> ProcessShards:
    """This process's contiguous share of `split` (see `process_example_range`)."""
    start, end = process_example_range(
        builder.info.splits[split].num_examples, layout.process_index, layout.process_count
    )
    instructions = builder.info.splits[f'{split}[{start}:{end}]'].file_instructions
    return ProcessShards(split=split, first_index=start, instructions=tuple(instructions))


def read_records(
    shards: ProcessShards,
    *,
    file_order: Sequence[int] | None = None,
    transform: Callable[[Features], Features] | None = None,
) -> tf.data.Dataset:
    """Serialized records with `source` (their shard file) and `index` (position in the split),
    or what `transform` makes of each.

    `file_order` permutes the shards before they are interleaved, READ_CYCLE_LENGTH at once.
    `transform` (Parse and Sample) runs in each shard's reader rather than as a stage of its
    own: a stage fewer per clip is ~9 % more clips per core, and READ_CYCLE_LENGTH readers in
    parallel parse and sample far faster than the clips can be decoded.
    """
    instructions = shards.instructions
    takes = [instruction.take for instruction in instructions]
    first_indices = shards.first_index + np.cumsum([0, *takes[:-1]], dtype=np.int64)
    order = np.arange(len(instructions)) if file_order is None else np.asarray(file_order)
    files = tf.data.Dataset.from_tensor_slices(
        {
            'filename': tf.constant([instructions[i].filename for i in order], tf.string),
            'skip': tf.constant([instructions[i].skip for i in order], tf.int64),
            'take': tf.constant([takes[i] for i in order], tf.int64),
            'first_index': tf.constant([first_indices[i] for i in order], tf.int64),
        }
    )

    def read_shard(shard: Features) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(shard['filename']).skip(shard['skip'])
        elements = (
            records.take(shard['take'])
            .enumerate()
            .map(
                lambda i, record: {
                    'record': record,
                    'source': shard['filename'],
                    'index': tf.cast(shard['first_index'] + i, tf.int32),
                }
            )
        )
        return elements.map(transform) if transform else elements

    return files.interleave(
        read_shard,
        cycle_length=max(1, min(READ_CYCLE_LENGTH, len(instructions))),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


# ----------------------------------------------------------------------------------------------
# Parse.


PARSED_FEATURES = ('frames', 'label', 'num_frames')


def record_parser(builder: tfds.core.DatasetBuilder) -> Callable[[Features], Features]:
    """Parse: a record -> `frames` (encoded JPEGs [n]), `label` and `num_frames` (checked).

    Parses with the builder's own tf.Example spec, but only the features needed, and leaves
    the frames encoded (TFDS's decoding layer would cost more than the parsing itself).
    """
    spec = builder.info.features.tf_example_spec
    missing = [name for name in PARSED_FEATURES if name not in spec]
    if missing:
        raise InputPipelineError(f'The dataset in {builder.data_dir} lacks features {missing}.')
    wanted = {name: spec[name] for name in PARSED_FEATURES}

    def parse(element: Features) -> Features:
        example = tf.io.parse_single_example(element['record'], wanted)
        frames = example['frames']
        num_frames = tf.shape(frames, out_type=tf.int32)[0]
        stored = tf.cast(example['num_frames'], tf.int32)
        consistent = tf.debugging.Assert(
            tf.logical_and(num_frames > 0, tf.equal(num_frames, stored)),
            [
                'Bad record in',
                element['source'],
                'at split index',
                element['index'],
                ': frames stored',
                num_frames,
                'num_frames',
                stored,
            ],
        )
        with tf.control_dependencies([consistent]):
            return {
                'frames': tf.identity(frames),
                'num_frames': num_frames,
                'label': tf.cast(example['label'], tf.int32),
                'index': element['index'],
                'source': element['source'],
            }

    return parse


# ----------------------------------------------------------------------------------------------
# Sample.


def _looped_clip(
    starts: tf.Tensor, num_frames: tf.Tensor, clip_length: int, stride: int
) -> tf.Tensor:
    """[len(starts), clip_length] indices start + k * stride inside the window that begins at
    `start` (clip_length * stride frames, cut at the video's end), looping over that window as
    the reference's LoopPadding does when it is short."""
    window = tf.minimum(clip_length * stride, num_frames - starts)[:, None]
    offsets = tf.range(clip_length, dtype=tf.int32)[None, :] * stride
    return starts[:, None] + offsets % window


def train_clip_frame_indices(
    num_frames: tf.Tensor, seed: tf.Tensor, clip_length: int, stride: int
) -> tf.Tensor:
    """int32 [clip_length]: a clip starting at a uniform random frame.

    As the reference's TemporalRandomCrop, the start is drawn from [0, n - window - 1] (its
    range stops one short of the last full window), and a video shorter than the window loops.
    """
    num_frames = tf.convert_to_tensor(num_frames, tf.int32)
    last_start = tf.maximum(0, num_frames - clip_length * stride - 1)
    start = tf.random.stateless_uniform(
        [], seed, minval=0, maxval=last_start + 1, dtype=tf.int32
    )
    return _looped_clip(start[None], num_frames, clip_length, stride)[0]


def train_crop_window(
    image_shape: tf.Tensor, seed: tf.Tensor, scales: Sequence[float], positions: Sequence[str]
) -> tf.Tensor:
    """int32 [3] (top, left, side): the reference's multi-scale corner crop, one draw.

    The side is int(scale * short side); corners touch the frame's edges; the centre box
    starts at (H // 2 - side // 2, W // 2 - side // 2) as in the reference.
    """
    height, width = image_shape[0], image_shape[1]
    scale_seed, position_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    scale = tf.gather(
        tf.constant(scales, tf.float64),
        tf.random.stateless_uniform([], scale_seed, maxval=len(scales), dtype=tf.int32),
    )
    side = tf.cast(tf.floor(tf.cast(tf.minimum(height, width), tf.float64) * scale), tf.int32)
    corner = {
        'center': (height // 2 - side // 2, width // 2 - side // 2),
        'top_left': (0, 0),
        'top_right': (0, width - side),
        'bottom_left': (height - side, 0),
        'bottom_right': (height - side, width - side),
    }
    choices = tf.stack([tf.stack(corner[p]) for p in positions])
    position = tf.random.stateless_uniform(
        [], position_seed, maxval=len(positions), dtype=tf.int32
    )
    top_left = tf.gather(choices, position)
    return tf.stack([top_left[0], top_left[1], side])


def train_sampler(
    config: ml_collections.ConfigDict, epoch: int
) -> Callable[[Features], Features]:
    """Sample (training): clip frames, crop window and flip, drawn from (seed, epoch, video)."""
    inputs = config.input
    epoch_seed = tf.constant([config.seed, epoch], tf.int64)

    def sample(example: Features) -> Features:
        seed = tf.random.experimental.stateless_fold_in(epoch_seed, example['index'])
        time_seed, crop_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        indices = train_clip_frame_indices(
            example['num_frames'], time_seed, inputs.clip_length, inputs.temporal_stride
        )
        frames = tf.gather(example['frames'], indices)
        image_shape = tf.io.extract_jpeg_shape(frames[0], output_type=tf.int32)
        return {
            'frames': frames,
            'crop_window': train_crop_window(
                image_shape, crop_seed, inputs.scales, inputs.crop_positions
            ),
            'image_width': image_shape[1],
            'flip': tf.random.stateless_uniform([], flip_seed) < inputs.flip_probability,
            'label': example['label'],
        }

    return sample


def eval_clip_frame_indices(
    num_frames: tf.Tensor, config: ml_collections.ConfigDict, mode: str
) -> tf.Tensor:
    """int32 [num_clips, clip_length]: the evaluation clips of a video of `num_frames` frames.

    'clip' (the reference's per-epoch validation): `eval_clips_per_video` clips whose starts are
    i * step, step = max(1, ceil((n - 1 - window) / (clips - 1))) as in the reference, kept
    inside the video; unlike the reference, short videos get no extra clips, so every video
    weighs the same. 'video' (the paper's protocol): consecutive non-overlapping windows
    covering the video, the last one looped. 'multiview' (the common multi-view protocol):
    `multiview_clips` clips spread evenly over the video, each starting at the middle of its
    share of the possible starts, floor((2i + 1) * (n - window + 1) / (2 * clips)); a video
    shorter than one window gives that many copies of its looped clip.
    """
    if mode not in EVAL_MODES:
        raise ValueError(f'Evaluation mode must be one of {EVAL_MODES}, got {mode!r}.')
    clip_length, stride = config.input.clip_length, config.input.temporal_stride
    window = clip_length * stride
    num_frames = tf.convert_to_tensor(num_frames, tf.int32)
    if mode == 'video':
        num_clips = (num_frames + window - 1) // window
        starts = tf.range(num_clips, dtype=tf.int32) * window
    elif mode == 'multiview':
        num_clips = config.input.multiview_clips
        num_starts = tf.maximum(1, num_frames - window + 1)
        starts = (2 * tf.range(num_clips, dtype=tf.int32) + 1) * num_starts // (2 * num_clips)
    else:
        num_clips = config.input.eval_clips_per_video
        step = tf.constant(1, tf.int32)
        if num_clips > 1:
            step = tf.maximum(1, -((window + 1 - num_frames) // (num_clips - 1)))
        starts = tf.minimum(
            tf.range(num_clips, dtype=tf.int32) * step, tf.maximum(0, num_frames - window)
        )
    return _looped_clip(starts, num_frames, clip_length, stride)


def eval_sampler(
    config: ml_collections.ConfigDict, mode: str
) -> Callable[[Features], Features]:
    """Sample (evaluation): each distinct frame the clips use once, and where each clip finds
    its frames (`clip_frames` [num_clips, clip_length] indexes `frames`)."""

    def sample(example: Features) -> Features:
        indices = eval_clip_frame_indices(example['num_frames'], config, mode)
        used, positions = tf.unique(tf.reshape(indices, [-1]))
        return {
            'frames': tf.gather(example['frames'], used),
            'clip_frames': tf.reshape(positions, tf.shape(indices)),
            'label': example['label'],
            'video_index': example['index'],
        }

    return sample


# ----------------------------------------------------------------------------------------------
# Decode.


def decode_crops(
    frames: tf.Tensor, crop_window: tf.Tensor, image_width: tf.Tensor, num_frames: int
) -> tf.Tensor:
    """uint8 [num_frames, side, side, 3]: only the crop window of each JPEG is decoded.

    The window is decoded one column wider on each side, then trimmed: libjpeg interpolates
    the chroma of a window's edge column without its outer neighbour, so the edge pixels
    would differ from those of a full decode (which the reference crops from).
    """
    top, left, side = crop_window[0], crop_window[1], crop_window[2]
    start = tf.maximum(0, left - 1)
    stop = tf.minimum(image_width, left + side + 1)
    window = tf.stack([top, start, side, stop - start])
    decoded = tf.stack(
        [tf.io.decode_and_crop_jpeg(frames[t], window, channels=3) for t in range(num_frames)]
    )
    return decoded[:, :, left - start : left - start + side]


def decode_frames(frames: tf.Tensor) -> tf.Tensor:
    """uint8 [n, H, W, 3] from n encoded JPEG frames of one video."""
    return tf.map_fn(
        lambda frame: tf.io.decode_jpeg(frame, channels=3),
        frames,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )


# ----------------------------------------------------------------------------------------------
# Preprocess.


def resize_bilinear_uint8(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Bilinear resize of uint8 [N, H, W, 3] to [N, height, width, 3], as PIL's BILINEAR in the
    reference: antialiased (triangle filter widened by the scale) when shrinking, rounded half
    up back to uint8.

    Plain bilinear gives the same result when enlarging and is several times faster, so the
    antialiased kernel runs only when some axis shrinks.
    """
    size = tf.stack([height, width])
    shrinks = tf.reduce_any(size < tf.shape(images)[1:3])
    # TensorFlow's resize kernels are about twice as fast on float32 input as on uint8.
    images = tf.cast(images, tf.float32)
    resized = tf.cond(
        shrinks,
        lambda: tf.image.resize(images, size, method='bilinear', antialias=True),
        lambda: tf.image.resize(images, size, method='bilinear'),
    )
    # Bilinear weights are a convex combination, so values stay in [0, 255].
    return tf.cast(resized + 0.5, tf.uint8)


def train_preprocessor(
    config: ml_collections.ConfigDict,
) -> Callable[[Features], Features]:
    """Decode + Preprocess (training): the crop window, padded to `max_crop_side`.

    Yields `crops` uint8 [clip_length, P, P, 3] holding the crop at the top left, its side
    `crop_sizes` and its flip draw `flips`; the train step resizes and flips on the device
    (`r3d_jax.crop_resize.CropResize`).
    """
    clip_length, sides = config.input.clip_length, crop_sides(config)
    padded = max(sides)

    def preprocess(sample: Features) -> Features:
        side = sample['crop_window'][2]
        known = tf.debugging.Assert(
            tf.reduce_any(tf.equal(side, sides)),
            [
                f'A crop side is not one of {sides}, the crops of frames with short side '
                f'config.data.frame_short_side={config.data.frame_short_side}; the dataset '
                'was built with another frame size. Side:',
                side,
            ],
        )
        with tf.control_dependencies([known]):
            crops = decode_crops(
                sample['frames'], sample['crop_window'], sample['image_width'], clip_length
            )
        # Zeros concatenated rather than tf.pad, which costs several times more on uint8.
        crops = tf.concat([crops, tf.zeros([clip_length, side, padded - side, 3], tf.uint8)], 2)
        crops = tf.concat([crops, tf.zeros([clip_length, padded - side, padded, 3], tf.uint8)], 1)
        return {
            'crops': tf.ensure_shape(crops, [clip_length, padded, padded, 3]),
            'crop_sizes': side,
            'flips': sample['flip'],
            'labels': sample['label'],
        }

    return preprocess


def eval_spatial_crops(config: ml_collections.ConfigDict, mode: str) -> int:
    """Spatial views per clip in an evaluation mode: `multiview_crops` for 'multiview',
    `eval_spatial_crops` otherwise."""
    return config.input.multiview_crops if mode == 'multiview' else config.input.eval_spatial_crops


def eval_spatial_views(
    frames: tf.Tensor, config: ml_collections.ConfigDict, mode: str
) -> tf.Tensor:
    """uint8 [num_views, ..., crop, crop, 3] from uint8 frames [..., H, W, 3].

    The short side is resized to `crop_size` (long side int(crop * long / short), as the
    reference's Scale), then one centre crop, or with 3 views (`eval_spatial_crops`) the start,
    centre and end of the long side (left/centre/right or top/centre/bottom).
    """
    crop = config.input.crop_size
    shape = tf.shape(frames)
    leading, height, width = shape[:-3], shape[-3], shape[-2]
    short = tf.minimum(height, width)

    def scaled(side: tf.Tensor) -> tf.Tensor:
        ratio = tf.cast(side, tf.float64) / tf.cast(short, tf.float64)
        return tf.cast(tf.floor(crop * ratio), tf.int32)

    new_height, new_width = scaled(height), scaled(width)
    flat = tf.reshape(frames, tf.concat([[-1], shape[-3:]], 0))
    resized = resize_bilinear_uint8(flat, new_height, new_width)
    spare_y, spare_x = new_height - crop, new_width - crop
    # Offsets along each axis in halves of the spare length: 1 = centre, 0 and 2 = the ends.
    fractions = (1,) if eval_spatial_crops(config, mode) == 1 else (0, 1, 2)
    views = []
    for fraction in fractions:
        top, left = fraction * spare_y // 2, fraction * spare_x // 2
        views.append(resized[:, top : top + crop, left : left + crop])
    return tf.reshape(tf.stack(views), tf.concat([[len(views)], leading, [crop, crop, 3]], 0))


def eval_preprocessor(
    config: ml_collections.ConfigDict, mode: str
) -> Callable[[Features], Features]:
    """Decode + Preprocess (evaluation): every view of every clip, as one entry per clip."""
    clip_length, crop = config.input.clip_length, config.input.crop_size

    def preprocess(sample: Features) -> Features:
        views = eval_spatial_views(decode_frames(sample['frames']), config, mode)
        clips = tf.gather(views, sample['clip_frames'], axis=1)  # [V, C, L, crop, crop, 3]
        clips = tf.reshape(
            tf.transpose(clips, [1, 0, 2, 3, 4, 5]), [-1, clip_length, crop, crop, 3]
        )
        count = tf.shape(clips)[0]
        return {
            'clips': clips,
            'labels': tf.fill([count], sample['label']),
            'video_index': tf.fill([count], sample['video_index']),
        }

    return preprocess


# ----------------------------------------------------------------------------------------------
# Postprocess.


def device_batches(layout: BatchLayout) -> Callable[[Features], Features]:
    """Reshapes a local batch [local_batch, ...] to [local_devices, per_device_batch, ...]."""

    leading = [layout.local_device_count, layout.per_device_batch]

    def split(batch: Features) -> Features:
        return {
            key: tf.reshape(value, tf.concat([leading, tf.shape(value)[1:]], 0))
            for key, value in batch.items()
        }

    return split


def padded_batch(local_batch: int) -> Callable[[Features], Features]:
    """Pads a (last, short) batch to `local_batch` entries; `mask` is False on the padding."""

    def pad(batch: Features) -> Features:
        count = tf.shape(batch['labels'])[0]
        padded = {}
        for key, value in batch.items():
            padding = [[0, local_batch - count]] + [[0, 0]] * (value.shape.rank - 1)
            padded[key] = tf.ensure_shape(
                tf.pad(value, padding), [local_batch, *value.shape[1:]]
            )
        padded['mask'] = tf.ensure_shape(tf.range(local_batch) < count, [local_batch])
        return padded

    return pad


def _pipeline_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # Consecutive phases run as one function per element: less per-element overhead.
    options.experimental_optimization.map_fusion = True
    # Parallelism comes from the many elements in flight; ops inside one stay single-threaded.
    options.threading.max_intra_op_parallelism = 1
    return options


# ----------------------------------------------------------------------------------------------
# The pipelines.


def _train_pipeline(
    config: ml_collections.ConfigDict, epoch: int, start_step: int, layout: BatchLayout
) -> tuple[tf.data.Dataset, ProcessShards]:
    check_input_config(config)
    builder = load_builder(config)
    split = config.data.train_split
    num_steps = steps_per_epoch(config, builder.info.splits[split].num_examples)
    if not 0 <= start_step <= num_steps:
        raise ValueError(f'start_step {start_step} is not in [0, {num_steps}] (one epoch).')
    shards = process_shards(builder, split, layout)
    file_seed, shuffle_seed = np.random.SeedSequence([config.seed, epoch]).generate_state(2)
    file_order = np.random.default_rng(file_seed).permutation(len(shards.instructions))
    parallel = config.input.num_parallel_calls

    parse, sample = record_parser(builder), train_sampler(config, epoch)
    dataset = read_records(
        shards, file_order=file_order, transform=lambda record: sample(parse(record))
    )
    # Shuffled after sampling: the buffer holds clip_length encoded frames per video, not all.
    dataset = dataset.shuffle(config.input.shuffle_buffer, seed=int(shuffle_seed))
    dataset = dataset.take(num_steps * layout.local_batch)
    dataset = dataset.skip(start_step * layout.local_batch)  # Before Decode: nothing wasted.
    dataset = dataset.map(train_preprocessor(config), num_parallel_calls=parallel)
    dataset = dataset.batch(layout.local_batch, drop_remainder=True)
    dataset = dataset.map(device_batches(layout))
    dataset = dataset.prefetch(config.input.prefetch_batches)
    return dataset.with_options(_pipeline_options()), shards


def create_train_dataset(
    config: ml_collections.ConfigDict,
    *,
    epoch: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    local_device_count: int | None = None,
) -> tf.data.Dataset:
    """The tf.data pipeline behind `create_train_iterator` (for benchmarks and tools)."""
    layout = batch_layout(
        config.batch_size,
        process_index=process_index,
        process_count=process_count,
        local_device_count=local_device_count,
    )
    return _train_pipeline(config, epoch, start_step, layout)[0]


def create_train_iterator(
    config: ml_collections.ConfigDict,
    *,
    epoch: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    local_device_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's batches of steps start_step .. steps_per_epoch - 1 of `epoch`.

    Yields `crops` uint8 [local_devices, per_device_batch, clip_length, P, P, 3] (each crop
    at the top left; P from `r3d_jax.crop_resize.max_crop_side`), `crop_sizes` int32 and
    `flips` bool, which the train step turns into clips of `crop_size`, and `labels` int32,
    each with leading axes [local_devices, per_device_batch]. The same (config.seed, epoch,
    start_step) always gives the same batches; `start_step` skips clips before decoding them.
    Process and device counts default to JAX's.
    """
    layout = batch_layout(
        config.batch_size,
        process_index=process_index,
        process_count=process_count,
        local_device_count=local_device_count,
    )
    dataset, shards = _train_pipeline(config, epoch, start_step, layout)
    return _numpy_batches(dataset, shards)


def num_eval_entries(
    num_frames: np.ndarray, config: ml_collections.ConfigDict, mode: str
) -> int:
    """How many entries (clips x spatial views) evaluation yields for videos of these lengths."""
    views = eval_spatial_crops(config, mode)
    if mode == 'clip':
        return len(num_frames) * config.input.eval_clips_per_video * views
    if mode == 'multiview':
        return len(num_frames) * config.input.multiview_clips * views
    window = config.input.clip_length * config.input.temporal_stride
    return int(np.sum(-(-np.asarray(num_frames, np.int64) // window))) * views


def _split_num_frames(builder: tfds.core.DatasetBuilder, split: str) -> np.ndarray:
    """num_frames of every video of `split`, in split order (no frame is parsed or decoded)."""
    decoders = tfds.decode.PartialDecoding({'num_frames': True})
    dataset = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    return np.array([x['num_frames'] for x in dataset.as_numpy_iterator()], np.int64)


def _eval_batches_per_process(
    builder: tfds.core.DatasetBuilder,
    config: ml_collections.ConfigDict,
    mode: str,
    layout: BatchLayout,
) -> int:
    """The batch count of the process with the most entries: every process yields that many."""
    num_frames = _split_num_frames(builder, config.data.eval_split)
    ranges = [
        process_example_range(len(num_frames), index, layout.process_count)
        for index in range(layout.process_count)
    ]
    most = max(num_eval_entries(num_frames[start:end], config, mode) for start, end in ranges)
    return -(-most // layout.local_batch)


def _eval_pipeline(
    config: ml_collections.ConfigDict, mode: str, layout: BatchLayout
) -> tuple[tf.data.Dataset, ProcessShards]:
    check_input_config(config)
    if mode not in EVAL_MODES:
        raise ValueError(f'Evaluation mode must be one of {EVAL_MODES}, got {mode!r}.')
    builder = load_builder(config)
    shards = process_shards(builder, config.data.eval_split, layout)
    parallel = config.input.num_parallel_calls

    parse, sample = record_parser(builder), eval_sampler(config, mode)
    dataset = read_records(shards, transform=lambda record: sample(parse(record)))
    dataset = dataset.map(eval_preprocessor(config, mode), num_parallel_calls=parallel)
    dataset = dataset.unbatch().batch(layout.local_batch)
    dataset = dataset.map(padded_batch(layout.local_batch))
    if layout.process_count > 1:
        # Every process must run as many pmapped steps as the others: add masked batches.
        empty = {
            key: tf.zeros(spec.shape, spec.dtype) for key, spec in dataset.element_spec.items()
        }
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(empty).repeat())
        dataset = dataset.take(_eval_batches_per_process(builder, config, mode, layout))
    dataset = dataset.map(device_batches(layout))
    dataset = dataset.prefetch(config.input.prefetch_batches)
    return dataset.with_options(_pipeline_options()), shards


def create_eval_dataset(
    config: ml_collections.ConfigDict,
    *,
    mode: str,
    process_index: int | None = None,
    process_count: int | None = None,
    local_device_count: int | None = None,
) -> tf.data.Dataset:
    """The tf.data pipeline behind `create_eval_iterator` (for benchmarks and tools)."""
    layout = batch_layout(
        config.eval_batch_size,
        process_index=process_index,
        process_count=process_count,
        local_device_count=local_device_count,
    )
    return _eval_pipeline(config, mode, layout)[0]


def create_eval_iterator(
    config: ml_collections.ConfigDict,
    *,
    mode: str,
    process_index: int | None = None,
    process_count: int | None = None,
    local_device_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's evaluation batches, every clip of its videos exactly once.

    mode 'clip': `eval_clips_per_video` clips per video; 'video': every clip covering each
    video (see `eval_clip_frame_indices`), each in `eval_spatial_crops` views; 'multiview':
    `multiview_clips` clips spread over each video in `multiview_crops` views. Yields `clips`,
    `labels`, `video_index` (the video's index in the split) and `mask` (False on padding),
    each with leading axes [local_devices, per_device_batch]. With several processes, all
    yield the same number of batches.
    """
    layout = batch_layout(
        config.eval_batch_size,
        process_index=process_index,
        process_count=process_count,
        local_device_count=local_device_count,
    )
    dataset, shards = _eval_pipeline(config, mode, layout)
    return _numpy_batches(dataset, shards)


# ----------------------------------------------------------------------------------------------
# Iterators over numpy batches, with read errors traced to their shard.


def _corrupt_shard_error(shards: ProcessShards, error: tf.errors.OpError) -> InputPipelineError:
    """The error to raise for `error`: it names the shard holding a corrupt record if one of
    `shards` has one (found by reading each shard's records, checksums included)."""
    split = shards.split
    for path in shards.paths:
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.OpError as shard_error:
            return InputPipelineError(
                f'Shard {path} of split {split!r} holds a corrupt record '
                f'({shard_error.message.strip()}); rebuild the dataset.'
            )
    return InputPipelineError(f'Reading split {split!r} failed: {error.message.strip()}')


def _numpy_batches(
    dataset: tf.data.Dataset, shards: ProcessShards
) -> Iterator[dict[str, np.ndarray]]:
    """The dataset's batches as numpy arrays; TensorFlow errors become InputPipelineErrors."""
    iterator = dataset.as_numpy_iterator()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise _corrupt_shard_error(shards, error) from error
        yield batch
