r"""ResNet-18 trained from scratch on HMDB-51 split 1, with the recipe of Hara et al. for UCF-101.

    python -m r3d_jax.data.build --dataset=hmdb51 --videos_dir=hmdb51_org \
        --splits_dir=testTrainMulti_7030_splits --split=1 --data_dir=data/tfds \
        --frame_short_side=128
    python train.py --config=configs/r18_hmdb51.py --workdir=workdirs/r18_hmdb51

`hmdb51_org/` holds the 51 class folders unpacked from `hmdb51_org.rar` (one `.rar` per class
inside); `testTrainMulti_7030_splits/` comes from `test_train_splits.rar`. The paper trains
ResNet-18 from scratch on HMDB-51 to show that it overfits (as on UCF-101 and ActivityNet); the
recipe is `configs/r18_ucf101.py`'s with HMDB-51's data and 51 classes.

Cost: split 1's 3,570 training videos make 27 steps of 128 clips per epoch, 5,400 steps in
200 epochs (0.69 M clips): 3.3-5 minutes of device time at the ~2,300-3,500 clips/s measured
on one H200 (README "Speed"), plus one validation pass of the 1,530 test videos per epoch.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101.py')

    # Data: HMDB-51 split 1, frames with short side 128 like the UCF-101 recipe.
    config.data.dataset = 'hmdb51'
    config.data.split_number = 1
    config.data.frame_short_side = 128
    config.data.train_split = 'train'
    config.data.eval_split = 'test'

    config.model.num_classes = 51
    return config
