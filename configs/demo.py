r"""A demo that trains on a CPU in minutes: ResNet-10 on a 10-class synthetic UCF-101.

    python train.py --config=configs/demo.py --workdir=workdirs/demo

The first run generates the synthetic videos (`r3d_jax.data.synthetic`, in UCF-101's exact
on-disk format) into `data/demo/`, builds them into TFRecords like the real dataset, then
trains and reports the paper's video-level accuracy on the synthetic test split in
`workdirs/demo/eval_video.json`. The classes differ only by how an object moves (direction,
spin, zoom, swing), so a 3D CNN must use time to tell them apart.

Everything is the reference recipe scaled down: the same model family, input pipeline,
multi-scale corner crops, SGD with PyTorch's dampened momentum and coupled weight decay,
validation and checkpoints.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.seed = 0

    # 10 motion classes x 10 groups x 3 clips of 16-32 frames; split 1 tests on 3 groups.
    config.data.data_dir = 'data/demo/tfds'
    config.data.raw_dir = 'data/demo/synthetic_ucf101'
    config.data.if_missing = 'synthetic'
    config.data.split_number = 1
    config.data.frame_short_side = 32
    config.data.synthetic.num_classes = 10
    config.data.synthetic.num_groups = 10
    config.data.synthetic.clips_per_group = 3
    config.data.synthetic.min_frames = 16
    config.data.synthetic.max_frames = 32
    config.data.synthetic.seed = 0

    # 8-frame clips cropped to 24x24 from the 32-pixel frames.
    config.input.clip_length = 8
    config.input.temporal_stride = 1
    config.input.crop_size = 24
    config.input.scales = (1.0, 2.0**-0.25)
    config.input.crop_positions = (
        'center',
        'top_left',
        'top_right',
        'bottom_left',
        'bottom_right',
    )
    config.input.flip_probability = 0.5
    config.input.shuffle_buffer = 256
    config.input.eval_clips_per_video = 3

    # ResNet-10 with a 3-frame stem kernel, computed in float32 (CPUs lack fast bfloat16).
    config.model.depth = 10
    config.model.num_classes = 10
    config.model.shortcut = 'B'
    config.model.stem_temporal_kernel = 3
    config.model.dtype = 'float32'

    # The reference's SGD; a cosine schedule fits the short run better than the plateau.
    config.optimizer.name = 'sgd'
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.dampening = 0.9
    config.optimizer.weight_decay = 1e-3
    config.schedule.name = 'cosine'
    config.schedule.warmup_epochs = 1

    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_epochs = 15
    config.log_every_steps = 10
    config.eval_every_epochs = 5
    config.checkpoint_every_steps = 100
    config.video_eval_at_end = True
    return config
