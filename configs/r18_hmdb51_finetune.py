r"""ResNet-18 fine-tuned on HMDB-51 split 1 from the reference's Kinetics-400 weights.

First import the reference's Kinetics ResNet-18 (`resnet-18-kinetics.pth`, released with the
CVPR2018 branch; type-A shortcuts). The importer keeps the backbone and gives the classifier
51 fresh outputs; the data are built as for `configs/r18_hmdb51.py`:

    python -m r3d_jax.data.build --dataset=hmdb51 --videos_dir=hmdb51_org \
        --splits_dir=testTrainMulti_7030_splits --split=1 --data_dir=data/tfds \
        --frame_short_side=128
    python -m r3d_jax.convert_torch --checkpoint=resnet-18-kinetics.pth \
        --config=configs/r18_hmdb51_finetune.py --output=weights/r18_kinetics_hmdb51
    python train.py --config=configs/r18_hmdb51_finetune.py --workdir=workdirs/r18_hmdb51_ft

As `configs/r18_ucf101_finetune.py`: only
conv5_x (`layer4`) and the classifier train, lr 0.001, weight decay 1e-5, 300 epochs.

Cost: 27 steps per epoch, 8,100 steps in 300 epochs (1.04 M clips): at most 5-7.5 minutes of
device time at the ~2,300-3,500 clips/s measured for whole training steps on one H200 (README
"Speed"); the frozen stages need no weight gradients, so it is less.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101_finetune.py')

    config.data.dataset = 'hmdb51'
    config.data.split_number = 1
    config.data.eval_split = 'test'
    config.model.num_classes = 51

    # The imported Kinetics weights (the classifier already has 51 outputs).
    config.init_from = 'weights/r18_kinetics_hmdb51'
    config.init_from_skip = ()
    return config
