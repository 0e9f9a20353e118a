r"""ResNet-18 trained here on Kinetics-400, fine-tuned on UCF-101 split 1.

Train `configs/r18_kinetics400.py` first. Its best checkpoint (by validation accuracy) is the
starting point (`config.init_from='workdirs/r18_kinetics400:best'`); its 400-way classifier
is replaced by a fresh 101-way one (`config.init_from_skip`):

    python -m r3d_jax.data.build --dataset=ucf101 --videos_dir=UCF-101 \
        --splits_dir=ucfTrainTestlist --split=1 --data_dir=data/tfds --frame_short_side=128
    python train.py --config=configs/r18_kinetics400_to_ucf101.py --workdir=workdirs/k400_ucf101

The rest is the reference's fine-tuning, as in `configs/r18_ucf101_finetune.py`: only conv5_x
(`layer4`) and the classifier train, lr 0.001, weight decay 1e-5, 300 epochs, with the frames and
normalisation of the Kinetics run.

Cost: 9,537 training videos make 74 steps per epoch, 22,200 steps in 300 epochs (2.8 M
clips): at most 14-21 minutes of device time at the ~2,300-3,500 clips/s measured for whole
training steps on one H200 (README "Speed"); the frozen stages need no weight gradients, so it
is less.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101_finetune.py')

    # The Kinetics-400 run's best checkpoint, with a fresh classifier for UCF-101's classes.
    config.init_from = 'workdirs/r18_kinetics400:best'
    config.init_from_skip = ('fc',)
    return config
