r"""Your own videos: ResNet-18 fine-tuned from Kinetics weights on a list of labelled files.

List your videos (paths relative to `--videos_dir`, one `<path> <label>` per line; a label is a
class name, or a 0-based index into `classes.txt`) in `lists/train.txt` and `lists/test.txt`
(and optionally `lists/val.txt`, `lists/classes.txt`), build them under a name of your choice,
import the reference's Kinetics ResNet-18 with as many outputs as you have classes, and train:

    python -m r3d_jax.data.build --dataset=video_list --video_list_name=my_videos \
        --videos_dir=my_videos --splits_dir=my_videos/lists --data_dir=data/tfds
    python -m r3d_jax.convert_torch --checkpoint=resnet-18-kinetics.pth \
        --config=configs/video_list_example.py --output=weights/r18_kinetics_my_videos
    python train.py --config=configs/video_list_example.py --workdir=workdirs/my_videos

Without `--splits_dir`, `my_videos/` must hold a folder per class, and
`--video_list_test_fraction` (0.3) of each class's videos, drawn with `--video_list_seed` (0),
are the test split; pass the same values as `--config.data.video_list_*` when training. Any
container and codec FFmpeg reads works, at any size and frame rate (portrait videos too).
Set `config.model.num_classes` below to the number of classes the build prints (the trainer
checks it). For a large dataset, training from scratch is `configs/r18_ucf101.py` with the
data fields below.

Cost: per 1,000 training videos, 7 steps of 128 clips per epoch, 2,100 steps in 300 epochs
(0.27 M clips): 1.3-2 minutes of device time at the ~2,300-3,500 clips/s measured for whole
training steps on one H200 (README "Speed").
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101_finetune.py')

    # Data: the videos built with --video_list_name=my_videos, 128-pixel frames.
    config.data.dataset = 'video_list'
    config.data.video_list_name = 'my_videos'
    config.data.video_list_test_fraction = 0.3  # Only when built from class folders.
    config.data.video_list_seed = 0
    config.data.frame_short_side = 128
    config.data.train_split = 'train'
    config.data.eval_split = 'test'  # 'val' if you listed one.

    # Your number of classes.
    config.model.num_classes = 10

    # The imported Kinetics backbone, fine-tuned as the reference fine-tunes: the last stage
    # and the classifier, lr 0.001, weight decay 1e-5.
    config.init_from = 'weights/r18_kinetics_my_videos'
    config.init_from_skip = ()
    config.optimizer.trainable = 'last_stage_and_head'
    config.optimizer.learning_rate = 0.001
    config.optimizer.weight_decay = 1e-5
    config.num_epochs = 300
    return config
