r"""ResNet-18 trained from scratch on ActivityNet v1.3's annotated segments, as the reference does.

    python -m r3d_jax.data.build --dataset=activitynet --videos_dir=activitynet/videos \
        --annotations=activitynet/activity_net.v1-3.min.json --data_dir=data/tfds \
        --frame_short_side=128
    python train.py --config=configs/r18_activitynet.py --workdir=workdirs/r18_activitynet

As in the reference (`datasets/activitynet.py`), every annotated segment of a `training`
video is one example holding only the segment's frames, and the `validation` subset's segments
are the evaluation set; the 200 classes are the taxonomy's leaves. Videos gone from YouTube are
skipped and recorded, up to a fifth of a split. The paper's point: ResNet-18 overfits
ActivityNet when trained from scratch. The recipe is `configs/r18_ucf101.py`'s.

Cost: v1.3's 15,410 training segments (in 10,024 videos; copies hold fewer) make 120 steps of
128 clips per epoch, 24,000 steps in 200 epochs (3.1 M clips): 15-22 minutes of device time at
the ~2,300-3,500 clips/s measured on one H200 (README "Speed"), plus a validation pass of the
7,654 validation segments per epoch.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101.py')

    # Data: ActivityNet v1.3 segments, frames with short side 128; up to a fifth of a split's
    # segments may be skipped (missing videos).
    config.data.dataset = 'activitynet'
    config.data.frame_short_side = 128
    config.data.max_skip_fraction = 0.2
    config.data.train_split = 'train'
    config.data.eval_split = 'validation'

    config.model.num_classes = 200
    return config
