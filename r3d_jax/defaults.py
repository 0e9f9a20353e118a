"""The configuration schema: every field of r3d-jax, with the reference's values as defaults.

The recipes in the repository's `configs/` folder start from `get_config()` and change only
what differs (`configs/default.py` is this schema as a recipe). Any field can be overridden on
the command line, e.g. `python train.py --config=configs/r18_ucf101.py --config.batch_size=64`;
a field that is not defined here is an error that names it (`unknown_fields`).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Sequence

import ml_collections

# The reference's per-channel mean of Kinetics frames in [0, 255] (CVPR2018 branch).
REFERENCE_MEAN = (114.7748, 107.7354, 99.4750)
REFERENCE_STD = (38.7568578, 37.88248729, 40.02898126)
# The five scales of the multi-scale corner crop: 1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2.
REFERENCE_SCALES = tuple(2.0 ** (-k / 4) for k in range(5))


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Dataset: TFRecords of JPEG frames written by `python -m r3d_jax.data.build`, stored at
    # <data_dir>/<dataset>_frames/<identity>_<frame_short_side>px[_q<jpeg_quality>]/1.0.0.
    config.data = ml_collections.ConfigDict()
    # The dataset layout (r3d_jax/data/layouts/): 'ucf101', 'hmdb51', 'video_list' (your own
    # videos), 'kinetics' or 'activitynet'.
    config.data.dataset = 'ucf101'
    config.data.data_dir = 'data/tfds'  # TFDS data_dir holding the built dataset.
    config.data.split_number = 1  # Official split of 'ucf101' and 'hmdb51': 1, 2 or 3.
    config.data.kinetics_version = 400  # 'kinetics': Kinetics-400, -600 or -700.
    # 'video_list': the name your dataset is stored under (letters, digits, '_', '-').
    config.data.video_list_name = 'my_videos'
    # 'video_list' from class folders (no list files, no split folders): the share of each
    # class's videos held out for testing, and the seed that draws them.
    config.data.video_list_test_fraction = 0.3
    config.data.video_list_seed = 0
    config.data.frame_short_side = 128  # Stored frame size (128 as torchvision; 240 as reference).
    config.data.jpeg_quality = 90  # Stored JPEG quality; another value is another dataset.
    # The largest share of a split's listed videos the build may skip (missing or undecodable)
    # before it fails; negative: the layout's own, 0 for 'ucf101', 'hmdb51' and 'video_list',
    # 0.2 for 'kinetics' and 'activitynet' (copies of those always lack some videos).
    config.data.max_skip_fraction = -1.0
    config.data.train_split = 'train'
    config.data.eval_split = 'test'  # 'validation' for 'kinetics' and 'activitynet'.
    # When the dataset is absent: '' fails with instructions; 'synthetic' generates synthetic
    # videos in the layout's exact format into `raw_dir` and builds them first (demo/quickstart).
    config.data.if_missing = ''
    config.data.raw_dir = 'data/synthetic_ucf101'
    # The synthetic stand-in (r3d_jax/data/synthetic/): the dataset's exact layout and codec,
    # one motion per class. A group is a source whose clips stay on one side of every split.
    config.data.synthetic = ml_collections.ConfigDict()
    config.data.synthetic.num_classes = 101  # At most 147; the first ten are the easiest.
    # Groups per class: UCF-101 groups, HMDB-51 source films, Kinetics/video-list videos (split
    # 1 of UCF-101's scheme, 7 of 25, is the test or validation set), ActivityNet videos.
    config.data.synthetic.num_groups = 25
    # Videos per group; ActivityNet: annotated segments per video.
    config.data.synthetic.clips_per_group = 4
    # Frames per video (ActivityNet: per segment, with still stretches of up to half as many
    # around them), uniform in [min_frames, max_frames].
    config.data.synthetic.min_frames = 12
    config.data.synthetic.max_frames = 60
    config.data.synthetic.seed = 0
    # The layout's form: '' its usual one; 'video_list': 'with_val' (adds val.txt) or
    # 'split_folders' (<split>/<class>/ folders, no lists); 'kinetics': 'underscore_folders'
    # (label folders spell spaces as '_') or 'flat' (one folder of clips).
    config.data.synthetic.variant = ''
    # Downloaded datasets ('kinetics', 'activitynet'): the fraction of listed videos whose file
    # is absent (rounded up), and how many are truncated (corrupt) files.
    config.data.synthetic.missing_fraction = 0.05
    config.data.synthetic.corrupt_videos = 1
    config.data.build_workers = 0  # Processes that generate/decode videos; 0: one per CPU core.

    # Input pipeline (training augmentation and evaluation views).
    config.input = ml_collections.ConfigDict()
    config.input.clip_length = 16  # Frames per clip.
    config.input.temporal_stride = 1  # Frame step inside a clip (1: consecutive frames).
    config.input.crop_size = 112  # Side of the square clips the model sees.
    # Training crop: a square of side scale * short side, at one of crop_positions, resized
    # (PIL's bilinear, on the device) to crop_size; one draw per clip.
    config.input.scales = REFERENCE_SCALES
    config.input.crop_positions = ('center', 'top_left', 'top_right', 'bottom_left', 'bottom_right')
    config.input.flip_probability = 0.5  # Horizontal flip, drawn once per training clip.
    # Normalisation, done on the device from uint8 clips: (x * value_scale - mean) / std.
    # Reference (CVPR2018): values in [0, 255], minus REFERENCE_MEAN, std 1.
    config.input.value_scale = 1.0
    config.input.mean = REFERENCE_MEAN
    config.input.std = (1.0, 1.0, 1.0)
    config.input.shuffle_buffer = 1024  # Sampled clips (encoded frames) shuffled per process.
    config.input.num_parallel_calls = -1  # Clips (eval: videos) decoded at once; -1: AUTOTUNE.
    config.input.prefetch_batches = 2  # Batches prepared ahead of the training step.
    # "clip" mode (per-epoch validation): clips per video, spaced as the reference, centre crop.
    config.input.eval_clips_per_video = 3
    config.input.eval_spatial_crops = 1  # 1: centre crop; 3: multi-view (left/centre/right).
    # "multiview" mode (the common multi-view protocol): clips spread evenly over each video,
    # times spatial crops (3: left/centre/right along the long side), averaged per video.
    config.input.multiview_clips = 10
    config.input.multiview_crops = 3

    # Model (r3d_jax/models/): the architecture, one of the reference code's 'resnet',
    # 'preresnet' (pre-activation), 'wideresnet', 'resnext', 'densenet', or torchvision's
    # video ResNets 'r3d', 'mc3', 'r2plus1d' (r3d_18, mc3_18, r2plus1d_18 at depth 18).
    config.model = ml_collections.ConfigDict()
    config.model.arch = 'resnet'
    # resnet, r3d, mc3, r2plus1d: 10, 18, 34 (basic blocks), 50, 101, 152, 200 (bottlenecks);
    # preresnet: 18 ... 200; wideresnet: 50; resnext: 50, 101, 152; densenet: 121, 169, 201, 264.
    config.model.depth = 18
    config.model.num_classes = 101
    # Residual archs (all but densenet): 'A': zero-padded identity; 'B': 1x1x1 conv + BN.
    config.model.shortcut = 'B'
    # The reference builds shortcut A's zero-padded tensor from `.data`, so no gradient flows
    # through the three down-sampling shortcuts. True reproduces that.
    config.model.shortcut_a_stop_gradient = True
    config.model.widen_factor = 2  # wideresnet: stage widths 64k ... 512k (reference's k).
    config.model.cardinality = 32  # resnext: groups of each bottleneck's 3x3x3 conv.
    config.model.growth_rate = 32  # densenet: channels each dense layer adds.
    config.model.bn_size = 4  # densenet: a dense layer's 1x1x1 conv has bn_size * growth_rate.
    # The next three shape the reference's stem (resnet, preresnet, wideresnet, resnext,
    # densenet); torchvision's archs have fixed stems without max pool. The reference uses
    # temporal stride 2 for clips of 32+ frames.
    config.model.stem_temporal_kernel = 7
    config.model.stem_temporal_stride = 1
    config.model.stem_max_pool = True
    # How the stem conv is computed, with the same parameters and values: 'direct';
    # 'space_to_depth' (a 7x4x4 conv over 2x2 pixel blocks in 12 channels; faster on GPUs);
    # 'space_to_depth_padded' (those channels zero-padded to 16); 'space_to_depth_temporal_taps'
    # (that conv as one 2D conv per temporal tap, summed); 'space_to_depth_folded' (one 2D conv
    # over the taps folded into channels). See r3d_jax/models/conv_formulations.py.
    config.model.stem_conv = 'space_to_depth'
    # How each stage's (1 to 4) other convolutions are computed, with the same parameters and
    # values: 'native' (a 3D conv), 'temporal_taps_2d' (one 2D conv per temporal tap, summed) or
    # 'folded_taps_2d' (one 2D conv over the taps folded into channels).
    config.model.conv_formulation = ('native', 'native', 'native', 'native')
    # How the stem max pool's gradient is computed, routed to the same entries: 'saved_indices'
    # (the forward pass records each window's winner) or 'select_and_scatter' (XLA's own).
    config.model.max_pool_gradient = 'saved_indices'
    config.model.dtype = 'bfloat16'  # Computation dtype; parameters are always float32.
    config.model.sync_batch_norm = True  # Batch statistics averaged over all devices.
    config.model.bn_momentum = 0.9  # Flax convention (PyTorch momentum 0.1).
    config.model.bn_epsilon = 1e-5
    # Batch variance as E[x^2] - E[x]^2 in one pass (True) or around the mean in two (False).
    config.model.bn_fast_variance = False

    # Optimiser: SGD with the reference's PyTorch semantics.
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = 'sgd'  # 'sgd' or 'adamw'.
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.dampening = 0.9  # PyTorch: buf = momentum * buf + (1 - dampening) * grad.
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 1e-3  # Coupled L2: added to the gradient (sgd).
    # 'adamw' only (optax.adamw; its weight decay is decoupled and scaled by the learning rate).
    config.optimizer.adam_b1 = 0.9
    config.optimizer.adam_b2 = 0.999
    config.optimizer.adam_eps = 1e-8
    # Which parameters train: 'all', or 'last_stage_and_head' (the reference's fine-tuning).
    config.optimizer.trainable = 'all'

    # Learning-rate schedule.
    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = 'plateau'  # 'plateau', 'constant', 'step' or 'cosine'.
    config.schedule.plateau_factor = 0.1
    config.schedule.plateau_patience = 10  # Epochs without validation-loss improvement.
    # A validation loss improves when below best * (1 - threshold) (PyTorch's default, 'rel').
    config.schedule.plateau_threshold = 1e-4
    config.schedule.step_epochs = (100, 150)  # 'step': multiply by step_factor at these epochs.
    config.schedule.step_factor = 0.1
    config.schedule.warmup_epochs = 0  # 'cosine': linear warm-up before cosine decay.

    # Training loop.
    config.batch_size = 128  # Global batch, split evenly over all devices of all processes.
    config.num_epochs = 200
    config.log_every_steps = 50
    config.eval_every_epochs = 1  # Validation loss and clip accuracy (drives 'plateau').
    config.eval_batch_size = 128
    config.video_eval_at_end = True  # Video-level accuracy after the last epoch...
    # ...by these protocols, each with its own report: 'video' (the paper's: every
    # non-overlapping clip, centre crop), 'multiview' (input.multiview_clips x multiview_crops
    # per video) and/or 'clip' (input.eval_clips_per_video per video).
    config.final_eval_modes = ('video',)
    config.checkpoint_every_steps = 1000
    config.checkpoints_to_keep = 3  # The latest K, plus the best by validation accuracy.
    # A checkpoint to start from: a directory (e.g. one written by convert_torch), or
    # '<workdir>:best' / '<workdir>:latest' for a training run's best or latest checkpoint.
    config.init_from = ''
    # Top-level modules that keep their fresh initialisation instead of `init_from`'s values,
    # e.g. ('fc',) to replace the classifier when fine-tuning on other classes.
    config.init_from_skip = ()
    return config


# Fields of earlier versions, and what replaced them.
RETIRED_FIELDS = {
    'config.model.stem': "config.model.arch ('r3d' is the former stem='torchvision')",
}


class ConfigError(ValueError):
    """The config names a field that does not exist or holds values that cannot work together."""


def field_paths(config: ml_collections.ConfigDict, prefix: str = 'config') -> set[str]:
    """Every field of `config` as a dotted path, `config.model.depth` style."""
    paths = set()
    for key, value in config.items():
        path = f'{prefix}.{key}'
        paths.add(path)
        if isinstance(value, ml_collections.ConfigDict):
            paths |= field_paths(value, path)
    return paths


def unknown_fields(paths: Sequence[str]) -> list[str]:
    """Messages for the dotted field paths that the schema does not define."""
    known = field_paths(get_config())
    messages = []
    for path in paths:
        if path in RETIRED_FIELDS:
            messages.append(f'{path} (replaced by {RETIRED_FIELDS[path]})')
        elif path not in known:
            close = difflib.get_close_matches(path, sorted(known), n=1)
            hint = f' (did you mean {close[0]}?)' if close else ''
            messages.append(f'{path}{hint}')
    return messages


def check_known_fields(config: ml_collections.ConfigDict) -> None:
    """Rejects fields the schema does not define: a typo would otherwise be ignored."""
    unknown = unknown_fields(sorted(field_paths(config)))
    if unknown:
        raise ConfigError(
            f'Unknown config field(s): {", ".join(unknown)}. Every field is defined, with a '
            'comment, in r3d_jax/defaults.py.'
        )


def recipe_beside(config_file: str, name: str) -> ml_collections.ConfigDict:
    """`get_config()` of the recipe file `name` in the folder of `config_file`.

    Lets a recipe start from another one (`recipe_beside(__file__, 'r18_ucf101.py')`) wherever
    the recipes folder lies, without it being importable as a package.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(config_file)), name)
    spec = importlib.util.spec_from_file_location(os.path.splitext(name)[0], path)
    if spec is None or spec.loader is None:
        raise ConfigError(f'{path}: not a config file.')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
