r"""ResNet-18 fine-tuned on UCF-101 split 1 from Kinetics-400 weights (Hara et al., CVPR 2018).

First import the reference's Kinetics ResNet-18 (`resnet-18-kinetics.pth`, released with the
CVPR2018 branch; type-A shortcuts, trained on [0, 255] frames minus the reference mean, as this
config expects). The importer keeps the backbone and gives the classifier 101 fresh outputs;
the data are built as for `configs/r18_ucf101.py`:

    python -m r3d_jax.data.build --dataset=ucf101 --videos_dir=UCF-101 \
        --splits_dir=ucfTrainTestlist --split=1 --data_dir=data/tfds --frame_short_side=128
    python -m r3d_jax.convert_torch --checkpoint=resnet-18-kinetics.pth \
        --config=configs/r18_ucf101_finetune.py --output=weights/r18_kinetics
    python train.py --config=configs/r18_ucf101_finetune.py --workdir=workdirs/r18_ucf101_ft

Reproduces the reference's fine-tuning: only conv5_x (`layer4`) and the classifier train, with
lr 0.001 and weight decay 1e-5, for 300 epochs; the reference code reaches about 84 % top-1 on
split 1 this way. BatchNorm statistics of the frozen layers still update in training mode, as
in the reference.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101.py')

    # Start from the imported Kinetics weights (the classifier already has 101 outputs).
    config.init_from = 'weights/r18_kinetics'
    config.init_from_skip = ()

    # Train only the last stage and the classifier, with the fine-tuning learning rate.
    config.optimizer.trainable = 'last_stage_and_head'
    config.optimizer.learning_rate = 0.001
    config.optimizer.momentum = 0.9
    config.optimizer.dampening = 0.9
    config.optimizer.weight_decay = 1e-5

    config.schedule.name = 'plateau'
    config.schedule.plateau_factor = 0.1
    config.schedule.plateau_patience = 10

    config.num_epochs = 300
    return config
