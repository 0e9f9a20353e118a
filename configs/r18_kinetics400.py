r"""ResNet-18 trained from scratch on Kinetics-400: the reference's recipe (Hara et al., CVPR 2018).

    python -m r3d_jax.data.build --dataset=kinetics --kinetics_version=400 \
        --videos_dir=kinetics400/videos --train_csv=kinetics400/annotations/train.csv \
        --val_csv=kinetics400/annotations/val.csv --data_dir=data/tfds --frame_short_side=128
    python train.py --config=configs/r18_kinetics400.py --workdir=workdirs/r18_kinetics400

The build matches the CSV rows to the clips downloaded (`<youtube_id>_<start>_<end>.mp4`, flat or
in label folders); clips that are missing or do not decode are skipped and recorded, up to a
fifth of a split. The paper's point: Kinetics is large enough for ResNet-18 not to overfit; the
reference ResNet-18 reaches ~54 % video-level top-1 (~78 % top-5) on the validation set. The
final video accuracy is written to `<workdir>/eval_video.json`.

Cost: the ~240 k training clips copies of Kinetics-400 hold make 1,875 steps of 128 clips per
epoch, 375,000 steps in 200 epochs (48 M clips): 3.8-5.8 hours of device time at the
~2,300-3,500 clips/s measured for ResNet-18 on one H200 (README "Speed"). At 416-459 clips/s
per core for the input pipeline (README, 2-core CPU, UCF-101-sized frames), the host needs
about eight cores to keep up. Each epoch's validation scores ~20 k videos x 3 clips. Building
the dataset is projected at 3.3-4.3 hours on 16 cores (README "Speed", from 2 cores).
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.get_config()
    config.seed = 0

    # Data: Kinetics-400 train and validation, frames with short side 128; copies of Kinetics
    # lack some clips, so up to a fifth of a split may be skipped.
    config.data.dataset = 'kinetics'
    config.data.kinetics_version = 400
    config.data.frame_short_side = 128
    config.data.max_skip_fraction = 0.2
    config.data.train_split = 'train'
    config.data.eval_split = 'validation'

    # Input: 16 consecutive frames from a random start, multi-scale corner crop to 112x112 with
    # scales 1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2, horizontal flip; values in [0, 255] minus the
    # reference's mean, no division by std.
    config.input.clip_length = 16
    config.input.temporal_stride = 1
    config.input.crop_size = 112
    config.input.scales = defaults.REFERENCE_SCALES
    config.input.crop_positions = (
        'center',
        'top_left',
        'top_right',
        'bottom_left',
        'bottom_right',
    )
    config.input.flip_probability = 0.5
    config.input.value_scale = 1.0
    config.input.mean = defaults.REFERENCE_MEAN
    config.input.std = (1.0, 1.0, 1.0)

    # Model: ResNet-18 with type-A shortcuts, as the reference's Kinetics ResNet-18 and -34.
    config.model.depth = 18
    config.model.num_classes = 400
    config.model.shortcut = 'A'
    config.model.arch = 'resnet'
    config.model.dtype = 'bfloat16'
    config.model.sync_batch_norm = True

    # Optimiser: SGD with PyTorch semantics, lr 0.1, momentum 0.9, dampening 0.9, weight
    # decay 1e-3 added to the gradient.
    config.optimizer.name = 'sgd'
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.dampening = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 1e-3
    config.optimizer.trainable = 'all'

    # Schedule: lr divided by 10 once the validation loss has not improved for 10 epochs.
    config.schedule.name = 'plateau'
    config.schedule.plateau_factor = 0.1
    config.schedule.plateau_patience = 10

    # Loop: batch 128, 200 epochs, validation every epoch, video accuracy at the end.
    config.batch_size = 128
    config.num_epochs = 200
    config.eval_every_epochs = 1
    config.eval_batch_size = 128
    config.video_eval_at_end = True
    return config
