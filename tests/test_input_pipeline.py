"""The input pipelines: which frames, crops and flips training clips get, what evaluation
covers, batching and padding, determinism, resumption, per-process shards, corrupt shards.

The test dataset is built through the real path (AVI videos -> `build_dataset` -> TFRecords).
Its frames are flat colours that name themselves, robust to MPEG-4 and JPEG: frame i of video
v has red 8 + 16 * (i % 16), blue 8 + 16 * (i // 16) and green 8 + 12 * v.
"""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from r3d_jax import crop_resize, defaults, steps
from r3d_jax.data import datasets, input_pipeline, synthetic

CLASSES = ('Alpha', 'Beta', 'Gamma')
GROUPS = (1, 2, 3)  # Group 1 is held out for testing in split 1 (3 groups -> 1 test group).
# Lengths in order of writing (class by class, group by group, clips 1 and 2): several are
# shorter than CLIP_LENGTH, one is exactly CLIP_LENGTH and one is one frame longer.
LENGTHS = (3, 20, 12, 33, 9, 5, 17, 8, 40, 6, 14, 25, 4, 11, 29, 16, 7, 22)
CLIP_LENGTH = 8
CROP = 16
SHORT_SIDE = 32


def frame_colours(video_number: int, num_frames: int) -> np.ndarray:
    index = np.arange(num_frames)
    frames = np.empty((num_frames, synthetic.HEIGHT, synthetic.WIDTH, 3), np.uint8)
    frames[..., 0] = (8 + 16 * (index % 16))[:, None, None]
    frames[..., 1] = 8 + 12 * video_number
    frames[..., 2] = (8 + 16 * (index // 16))[:, None, None]
    return frames


def frame_numbers(clips: np.ndarray) -> np.ndarray:
    """[..., T, S, S, 3] -> [..., T]: which source frame each output frame shows."""
    mean = clips.astype(np.float64).mean(axis=(-3, -2))
    return (np.round((mean[..., 0] - 8) / 16) + 16 * np.round((mean[..., 2] - 8) / 16)).astype(
        int
    )


def video_numbers(clips: np.ndarray) -> np.ndarray:
    """[..., T, S, S, 3] -> [...]: which video a clip comes from."""
    return np.round((clips[..., 1].astype(np.float64).mean(axis=(-3, -2, -1)) - 8) / 12).astype(
        int
    )


def write_videos(root: str) -> dict[str, tuple[int, int]]:
    """A UCF-101-format tree of self-describing videos; returns video_id -> (number, length)."""
    videos_dir, lists_dir = os.path.join(root, 'videos'), os.path.join(root, 'lists')
    os.makedirs(lists_dir)
    train, test, videos = [], [], {}
    for label, name in enumerate(CLASSES):
        os.makedirs(os.path.join(videos_dir, name))
        for group in GROUPS:
            for clip in (1, 2):
                number = len(videos)
                stem = f'v_{name}_g{group:02d}_c{clip:02d}'
                synthetic.write_avi(
                    os.path.join(videos_dir, name, f'{stem}.avi'),
                    frame_colours(number, LENGTHS[number]),
                )
                videos[f'{name}/{stem}'] = (number, LENGTHS[number])
                if group == 1:
                    test.append(f'{name}/{stem}.avi\n')
                else:
                    train.append(f'{name}/{stem}.avi {label + 1}\n')
    with open(os.path.join(lists_dir, 'classInd.txt'), 'w') as f:
        f.writelines(f'{i + 1} {name}\n' for i, name in enumerate(CLASSES))
    with open(os.path.join(lists_dir, 'trainlist01.txt'), 'w') as f:
        f.writelines(train)
    with open(os.path.join(lists_dir, 'testlist01.txt'), 'w') as f:
        f.writelines(test)
    return videos


@pytest.fixture(scope='session')
def dataset(tmp_path_factory):
    """(data_dir, {split: [(video number, length) in split order]}) of the tiny dataset."""
    root = str(tmp_path_factory.mktemp('input_pipeline'))
    videos = write_videos(root)
    data_dir = os.path.join(root, 'tfds')
    directory = datasets.build_dataset(
        make_config(data_dir).data,
        {'videos_dir': os.path.join(root, 'videos'), 'splits_dir': os.path.join(root, 'lists')},
        workers=1,
    )
    builder = tfds.builder_from_directory(directory)
    order = {
        split: [videos[video_id] for video_id in split_video_ids(builder, split)]
        for split in ('train', 'test')
    }
    return data_dir, order


def make_config(data_dir: str):
    config = defaults.get_config()
    config.data.data_dir = data_dir
    config.data.frame_short_side = SHORT_SIDE
    config.model.num_classes = len(CLASSES)
    config.input.clip_length = CLIP_LENGTH
    config.input.crop_size = CROP
    config.input.shuffle_buffer = 8
    config.batch_size = 4
    config.eval_batch_size = 8
    return config


def single_process(**overrides):
    return {'process_index': 0, 'process_count': 1, 'local_device_count': 2, **overrides}


def collect(batches) -> dict[str, np.ndarray]:
    """Concatenates batches over their leading [devices, per_device] axes."""
    batches = list(batches)
    return {
        key: np.concatenate([b[key].reshape(-1, *b[key].shape[2:]) for b in batches])
        for key in batches[0]
    }


def train_clips(batches) -> np.ndarray:
    """The clips the train step makes of training batches: crops resized and flipped."""
    seen = collect(batches)
    resize = crop_resize.CropResize.from_config(make_config('unused'))
    return np.asarray(resize(seen['crops'], seen['crop_sizes'], seen['flips']))


# ----------------------------------------------------------------------------------------------
# Training input.


def test_train_batches_have_the_contract_layout(dataset):
    config = make_config(dataset[0])
    batches = list(input_pipeline.create_train_iterator(config, epoch=0, **single_process()))
    assert len(batches) == input_pipeline.steps_per_epoch(config, len(dataset[1]['train']))
    padded = crop_resize.max_crop_side(config)
    assert padded == SHORT_SIDE
    for batch in batches:
        assert batch['crops'].shape == (2, 2, CLIP_LENGTH, padded, padded, 3)
        assert batch['crops'].dtype == np.uint8
        assert set(batch['crop_sizes'].ravel()) <= set(crop_resize.crop_sides(config))
        assert batch['crop_sizes'].dtype == np.int32
        assert batch['flips'].dtype == bool
        for key in ('crop_sizes', 'flips', 'labels'):
            assert batch[key].shape == (2, 2)
        assert batch['labels'].dtype == np.int32
        # Each crop sits at the top left; the padding is zeros.
        crops = batch['crops'].reshape(4, *batch['crops'].shape[2:])
        for crop, side in zip(crops, batch['crop_sizes'].ravel(), strict=True):
            assert not crop[:, side:].any() and not crop[:, :, side:].any()
            assert crop[:, :side, :side].min() > 0  # Every synthetic colour channel is >= 8.
    # Benchmarks and tests stand in for the pipeline with steps.random_train_batch.
    stand_in = steps.random_train_batch(config, (2, 2), np.random.default_rng(0))
    assert {key: (value.shape, value.dtype) for key, value in stand_in.items()} == {
        key: (value.shape, value.dtype) for key, value in batches[0].items()
    }


@pytest.mark.parametrize('stride', [1, 2])
def test_train_clips_are_strided_runs_of_frames_looping_in_short_videos(dataset, stride):
    config = make_config(dataset[0])
    config.input.temporal_stride = stride
    lengths = dict(dataset[1]['train'])
    clips = train_clips(input_pipeline.create_train_iterator(config, epoch=3, **single_process()))
    for clip in clips:
        length = lengths[video_numbers(clip)]
        frames = frame_numbers(clip)
        start = frames[0]
        window = min(CLIP_LENGTH * stride, length - start)
        expected = start + (np.arange(CLIP_LENGTH) * stride) % window
        np.testing.assert_array_equal(frames, expected)
        assert 0 <= start <= max(0, length - CLIP_LENGTH * stride - 1)


def test_train_start_frame_is_uniform_over_the_reference_range():
    # The reference's TemporalRandomCrop draws the start from [0, n - clip_length - 1].
    starts = {
        int(input_pipeline.train_clip_frame_indices(12, tf.constant([7, i]), 8, 1)[0])
        for i in range(200)
    }
    assert starts == {0, 1, 2, 3}
    looped = input_pipeline.train_clip_frame_indices(3, tf.constant([0, 1]), 8, 1)
    np.testing.assert_array_equal(looped, [0, 1, 2, 0, 1, 2, 0, 1])


def test_train_crops_come_from_the_five_scales_at_the_five_positions():
    height, width = 32, 43
    expected = set()
    for scale in defaults.REFERENCE_SCALES:
        side = int(min(height, width) * scale)
        expected |= {
            (height // 2 - side // 2, width // 2 - side // 2, side),
            (0, 0, side),
            (0, width - side, side),
            (height - side, 0, side),
            (height - side, width - side, side),
        }
    windows = {
        tuple(
            input_pipeline.train_crop_window(
                tf.constant([height, width, 3]),
                tf.constant([1, i]),
                defaults.REFERENCE_SCALES,
                input_pipeline.CROP_POSITIONS,
            ).numpy()
        )
        for i in range(600)
    }
    # 25 (scale, position) pairs; at scale 1 the top and bottom corners coincide.
    assert len(expected) == 23
    assert windows == expected


def encoded_pattern(height: int = 32, width: int = 43) -> tf.Tensor:
    """A JPEG whose pixels differ along both axes, so crops and flips are visible."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 5, y * 7, (x * y) % 256], axis=-1).astype(np.uint8)
    return tf.io.encode_jpeg(image, quality=95)


# (0, 16, 16) starts and ends on JPEG block boundaries, where a bare window decode differs.
@pytest.mark.parametrize(
    'window', [(0, 0, 12), (5, 11, 22), (0, 27, 16), (8, 13, 24), (0, 16, 16)]
)
def test_train_clip_is_the_crop_of_every_frame_resized_exactly_as_pil_bilinear(window):
    jpeg = encoded_pattern()
    sample = {
        'frames': tf.stack([jpeg] * CLIP_LENGTH),
        'crop_window': tf.constant(window, tf.int32),
        'image_width': tf.constant(43),
        'flip': tf.constant(False),
        'label': tf.constant(1),
    }
    config = make_config('unused')
    config.input.scales = (0.375, 0.5, 0.6875, 0.75)  # Sides 12, 16, 22 and 24 of 32.
    preprocess = input_pipeline.train_preprocessor(config)
    resize = crop_resize.CropResize.from_config(config)

    def resized(sample):
        batch = {key: value.numpy()[None] for key, value in preprocess(sample).items()}
        return np.asarray(resize(batch['crops'], batch['crop_sizes'], batch['flips']))[0]

    clip = resized(sample)
    # The reference crops the fully decoded frame and resizes it with PIL's BILINEAR.
    top, left, side = window
    crop = tf.io.decode_jpeg(jpeg, channels=3).numpy()[top : top + side, left : left + side]
    expected = np.asarray(Image.fromarray(crop).resize((CROP, CROP), Image.BILINEAR), np.int16)
    # Every frame is exactly that crop, resized exactly as PIL does.
    np.testing.assert_array_equal(clip, np.broadcast_to(expected, clip.shape))
    flipped = resized({**sample, 'flip': tf.constant(True)})
    np.testing.assert_array_equal(flipped, clip[:, :, ::-1])


def test_a_crop_of_a_side_the_config_does_not_produce_is_reported():
    config = make_config('unused')  # Crops of 32-pixel frames: sides 32, 26, 22, 19 and 16.
    sample = {
        'frames': tf.stack([encoded_pattern()] * CLIP_LENGTH),
        'crop_window': tf.constant([0, 0, 30], tf.int32),
        'image_width': tf.constant(43),
        'flip': tf.constant(False),
        'label': tf.constant(1),
    }
    with pytest.raises(tf.errors.InvalidArgumentError, match='frame_short_side=32'):
        input_pipeline.train_preprocessor(config)(sample)


def test_train_flips_are_drawn_per_clip_with_the_configured_probability():
    config = make_config('unused')

    def flips(probability: float) -> list[bool]:
        config.input.flip_probability = probability
        sample = input_pipeline.train_sampler(config, epoch=0)
        example = {
            'frames': tf.stack([encoded_pattern()] * 10),
            'num_frames': tf.constant(10),
            'label': tf.constant(0),
        }
        return [bool(sample({**example, 'index': tf.constant(i)})['flip']) for i in range(64)]

    assert set(flips(0.5)) == {True, False}
    assert not any(flips(0.0))
    assert all(flips(1.0))


def test_train_batches_are_identical_for_the_same_seed_epoch_and_step(dataset):
    config = make_config(dataset[0])
    first = collect(input_pipeline.create_train_iterator(config, epoch=1, **single_process()))
    again = collect(input_pipeline.create_train_iterator(config, epoch=1, **single_process()))
    other = collect(input_pipeline.create_train_iterator(config, epoch=2, **single_process()))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first['crops'], other['crops'])


def test_train_start_step_yields_the_tail_of_the_full_epoch(dataset):
    config = make_config(dataset[0])
    full = list(input_pipeline.create_train_iterator(config, epoch=4, **single_process()))
    tail = list(
        input_pipeline.create_train_iterator(config, epoch=4, start_step=1, **single_process())
    )
    assert len(tail) == len(full) - 1
    for resumed, original in zip(tail, full[1:], strict=True):
        for key in original:
            np.testing.assert_array_equal(resumed[key], original[key])


def test_train_batch_must_split_evenly_over_devices(dataset):
    config = make_config(dataset[0])
    config.batch_size = 6
    with pytest.raises(ValueError, match=r'6 does not split evenly over 4 devices'):
        input_pipeline.create_train_iterator(
            config, epoch=0, process_index=0, process_count=2, local_device_count=2
        )


def test_steps_per_epoch_drops_the_remainder():
    config = make_config('unused')
    config.batch_size = 5
    assert input_pipeline.steps_per_epoch(config, 12) == 2
    with pytest.raises(ValueError, match='fewer than one batch'):
        input_pipeline.steps_per_epoch(config, 4)


# ----------------------------------------------------------------------------------------------
# Per-process shards.


def split_video_ids(builder, split: str) -> list[str]:
    ids = builder.as_dataset(split=split, decoders=tfds.decode.PartialDecoding({'video_id': True}))
    return [example['video_id'].decode() for example in ids.as_numpy_iterator()]


@pytest.mark.parametrize('process_count', [2, 3, 5])
def test_process_shards_are_disjoint_and_cover_the_split(dataset, process_count):
    builder = input_pipeline.load_builder(make_config(dataset[0]))
    video_id = {'video_id': builder.info.features.tf_example_spec['video_id']}
    seen = []
    for process_index in range(process_count):
        layout = input_pipeline.BatchLayout(process_index, process_count, 1, 1)
        shards = input_pipeline.process_shards(builder, 'train', layout)
        for element in input_pipeline.read_records(shards).as_numpy_iterator():
            parsed = tf.io.parse_single_example(element['record'], video_id)
            seen.append((int(element['index']), parsed['video_id'].numpy().decode()))
    assert sorted(index for index, _ in seen) == list(range(12))
    assert [name for _, name in sorted(seen)] == split_video_ids(builder, 'train')


def test_shuffled_shard_reads_keep_each_records_split_index(dataset):
    config = make_config(dataset[0])
    builder = input_pipeline.load_builder(config)
    whole = input_pipeline.process_shards(
        builder, 'train', input_pipeline.BatchLayout(0, 1, 1, 1)
    )
    # Cut the shard into three reads, as a split stored in three files is read.
    (only,) = whole.instructions
    pieces = tuple(
        type(only)(only.filename, skip, take, only.examples_in_shard)
        for skip, take in ((0, 5), (5, 4), (9, 3))
    )
    shards = input_pipeline.ProcessShards('train', 0, pieces)
    in_order = {
        int(e['index']): e['record']
        for e in input_pipeline.read_records(whole).as_numpy_iterator()
    }
    shuffled = list(input_pipeline.read_records(shards, file_order=[2, 0, 1]).as_numpy_iterator())
    assert [int(e['index']) for e in shuffled[:3]] == [9, 0, 5]
    assert {int(e['index']): e['record'] for e in shuffled} == in_order


def test_train_processes_read_disjoint_videos(dataset):
    config = make_config(dataset[0])
    videos = []
    for process_index in range(2):
        batches = input_pipeline.create_train_iterator(
            config, epoch=0, process_index=process_index, process_count=2, local_device_count=1
        )
        clips = train_clips(batches)
        assert len(clips) == input_pipeline.steps_per_epoch(config, 12) * 2
        videos.append(set(video_numbers(clips).tolist()))
    assert not videos[0] & videos[1]


# ----------------------------------------------------------------------------------------------
# Evaluation input.


def test_eval_clip_mode_spaces_clips_as_the_reference():
    config = make_config('unused')
    config.input.clip_length = 16
    config.input.eval_clips_per_video = 3
    starts = lambda n: input_pipeline.eval_clip_frame_indices(n, config, 'clip')[:, 0].numpy()
    # step = max(1, ceil((n - 1 - 16) / 2)): 100 -> 42, 30 -> 7; starts stay inside the video.
    np.testing.assert_array_equal(starts(100), [0, 42, 84])
    np.testing.assert_array_equal(starts(30), [0, 7, 14])
    np.testing.assert_array_equal(starts(17), [0, 1, 1])
    short = input_pipeline.eval_clip_frame_indices(5, config, 'clip').numpy()
    np.testing.assert_array_equal(short, np.tile(np.arange(16) % 5, (3, 1)))


def test_eval_video_mode_clips_tile_the_video_and_loop_the_last():
    config = make_config('unused')
    config.input.clip_length = 16
    indices = input_pipeline.eval_clip_frame_indices(36, config, 'video').numpy()
    np.testing.assert_array_equal(indices[:2].ravel(), np.arange(32))
    np.testing.assert_array_equal(indices[2], [32, 33, 34, 35] * 4)
    np.testing.assert_array_equal(
        input_pipeline.eval_clip_frame_indices(16, config, 'video'), [np.arange(16)]
    )


def test_eval_multiview_mode_spreads_its_clips_over_the_video():
    config = make_config('unused')
    config.input.clip_length = 16
    config.input.multiview_clips = 10
    starts = lambda n: input_pipeline.eval_clip_frame_indices(n, config, 'multiview')[:, 0]
    # 85 possible starts in 100 frames: clip i starts at floor((2i + 1) * 85 / 20).
    np.testing.assert_array_equal(starts(100), [4, 12, 21, 29, 38, 46, 55, 63, 72, 80])
    np.testing.assert_array_equal(starts(20), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    short = input_pipeline.eval_clip_frame_indices(5, config, 'multiview').numpy()
    np.testing.assert_array_equal(short, np.tile(np.arange(16) % 5, (10, 1)))
    config.input.multiview_clips = 1
    np.testing.assert_array_equal(starts(100), [42])  # One clip: the middle of the video.
    config.input.temporal_stride = 2  # A 32-frame window: 69 possible starts.
    np.testing.assert_array_equal(
        input_pipeline.eval_clip_frame_indices(100, config, 'multiview'), [np.arange(34, 66, 2)]
    )


def test_eval_multiview_mode_crops_by_its_own_count():
    config = make_config('unused')
    config.input.eval_spatial_crops, config.input.multiview_crops = 1, 3
    assert input_pipeline.eval_spatial_crops(config, 'multiview') == 3
    assert input_pipeline.eval_spatial_crops(config, 'video') == 1
    assert input_pipeline.num_eval_entries(np.array([5, 100]), config, 'multiview') == 2 * 10 * 3


def test_eval_video_mode_covers_every_frame_of_every_video_once(dataset):
    config = make_config(dataset[0])
    test_videos = dataset[1]['test']
    seen = collect(input_pipeline.create_eval_iterator(config, mode='video', **single_process()))
    keep = seen['mask']
    assert keep.sum() == sum(-(-length // CLIP_LENGTH) for _, length in test_videos)
    for index, (number, length) in enumerate(test_videos):
        mine = keep & (seen['video_index'] == index)
        clips = seen['clips'][mine]
        assert set(video_numbers(clips).tolist()) == {number}
        assert set(seen['labels'][mine].tolist()) == {number // 6}
        frames = frame_numbers(clips).ravel()
        np.testing.assert_array_equal(frames[:length], np.arange(length))
        last_start = (len(clips) - 1) * CLIP_LENGTH
        window = np.arange(last_start, length)
        np.testing.assert_array_equal(frames[length:], np.resize(window, len(frames) - length))


def test_eval_clip_mode_yields_the_clips_per_video_and_masks_the_padding(dataset):
    config = make_config(dataset[0])
    config.input.eval_clips_per_video = 3
    config.eval_batch_size = 8  # 6 videos x 3 clips = 18 entries: the last batch has 2.
    batches = list(input_pipeline.create_eval_iterator(config, mode='clip', **single_process()))
    assert len(batches) == 3
    seen = collect(batches)
    np.testing.assert_array_equal(seen['mask'], np.arange(24) < 18)
    assert not seen['clips'][18:].any()
    counts = np.bincount(seen['video_index'][seen['mask']], minlength=6)
    np.testing.assert_array_equal(counts, [3] * 6)
    assert seen['mask'].dtype == bool and seen['video_index'].dtype == np.int32


def test_eval_multi_view_yields_three_views_of_each_clip(dataset):
    config = make_config(dataset[0])
    config.input.eval_spatial_crops = 3
    seen = collect(input_pipeline.create_eval_iterator(config, mode='video', **single_process()))
    keep = seen['mask']
    clips_per_video = [-(-length // CLIP_LENGTH) for _, length in dataset[1]['test']]
    np.testing.assert_array_equal(
        np.bincount(seen['video_index'][keep]), 3 * np.array(clips_per_video)
    )
    # Views of a clip come together; flat frames make the three views identical.
    views = seen['clips'][keep].reshape(-1, 3, CLIP_LENGTH, CROP, CROP, 3)
    np.testing.assert_array_equal(frame_numbers(views[:, 0]), frame_numbers(views[:, 2]))


def test_eval_processes_yield_equal_batch_counts_and_every_clip_once(dataset):
    config = make_config(dataset[0])
    config.eval_batch_size = 4
    parts = []
    for process_index in range(2):
        batches = list(
            input_pipeline.create_eval_iterator(
                config, mode='video', process_index=process_index, process_count=2,
                local_device_count=2,
            )
        )
        parts.append(batches)
    assert len(parts[0]) == len(parts[1])
    seen = collect(parts[0] + parts[1])
    keep = seen['mask']
    expected = [-(-length // CLIP_LENGTH) for _, length in dataset[1]['test']]
    np.testing.assert_array_equal(np.bincount(seen['video_index'][keep]), expected)


def test_eval_spatial_views_are_centre_or_three_crops_along_the_long_side():
    config = make_config('unused')
    wide = np.tile(np.arange(48, dtype=np.uint8)[None, :, None] * 5, (32, 1, 3))[None]
    config.input.eval_spatial_crops = 1
    (centre,) = input_pipeline.eval_spatial_views(tf.constant(wide), config, 'video').numpy()
    assert centre.shape == (1, CROP, CROP, 3)
    config.input.eval_spatial_crops = 3
    views = input_pipeline.eval_spatial_views(tf.constant(wide), config, 'video').numpy()
    assert views.shape == (3, 1, CROP, CROP, 3)
    # Short side 32 -> 16, long side 48 -> 24: the crops start at x = 0, 4 and 8.
    resized = input_pipeline.resize_bilinear_uint8(tf.constant(wide), 16, 24).numpy()
    for view, left in zip(views, (0, 4, 8), strict=True):
        np.testing.assert_array_equal(view, resized[:, :, left : left + CROP])
    np.testing.assert_array_equal(views[1], centre)
    tall = np.transpose(wide, (0, 2, 1, 3))
    tall_views = input_pipeline.eval_spatial_views(tf.constant(tall), config, 'video').numpy()
    np.testing.assert_array_equal(tall_views, np.transpose(views, (0, 1, 3, 2, 4)))


# ----------------------------------------------------------------------------------------------
# Metadata and errors.


def test_dataset_metadata_reports_classes_and_split_sizes(dataset):
    config = make_config(dataset[0])
    metadata = input_pipeline.dataset_metadata(config)
    assert metadata.class_names == list(CLASSES)
    assert metadata.num_examples == {'train': 12, 'test': 6}
    config.model.num_classes = 101
    with pytest.raises(ValueError, match=r'num_classes is 101.*has 3 classes'):
        input_pipeline.dataset_metadata(config)


def test_corrupt_record_error_names_its_shard(dataset, tmp_path):
    data_dir = str(tmp_path / 'tfds')
    shutil.copytree(dataset[0], data_dir)
    config = make_config(data_dir)
    builder = input_pipeline.load_builder(config)
    (shard,) = builder.info.splits['train'].file_instructions
    with open(shard.filename, 'r+b') as f:
        f.seek(os.path.getsize(shard.filename) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(input_pipeline.InputPipelineError, match=os.path.basename(shard.filename)):
        list(input_pipeline.create_train_iterator(config, epoch=0, **single_process()))


def test_bad_input_config_is_rejected_by_field(dataset):
    config = make_config(dataset[0])
    config.input.crop_positions = ('center', 'middle')
    with pytest.raises(ValueError, match='crop_positions'):
        input_pipeline.create_train_iterator(config, epoch=0, **single_process())
    config = make_config(dataset[0])
    with pytest.raises(ValueError, match='mode'):
        input_pipeline.create_eval_iterator(config, mode='frames', **single_process())
