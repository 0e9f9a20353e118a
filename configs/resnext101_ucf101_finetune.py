r"""ResNeXt-101 fine-tuned on UCF-101 split 1 from Kinetics-400 weights (Hara et al., CVPR 2018).

First import the reference's Kinetics ResNeXt-101 (`resnext-101-kinetics.pth`, released with the
CVPR2018 branch: `--model resnext --model_depth 101 --resnet_shortcut B --resnext_cardinality 32`;
trained on 16-frame clips of [0, 255] frames minus the reference mean, as this config expects). The
importer keeps the backbone and gives the classifier 101 fresh outputs; the data are built as for
`configs/r18_ucf101.py`:

    python -m r3d_jax.data.build --dataset=ucf101 --videos_dir=UCF-101 \
        --splits_dir=ucfTrainTestlist --split=1 --data_dir=data/tfds --frame_short_side=128
    python -m r3d_jax.convert_torch --checkpoint=resnext-101-kinetics.pth \
        --config=configs/resnext101_ucf101_finetune.py \
        --output=weights/resnext101_kinetics_ucf101
    python train.py --config=configs/resnext101_ucf101_finetune.py \
        --workdir=workdirs/resnext101_ucf101_ft

The reference author's fine-tuning, as in `configs/r18_ucf101_finetune.py`: only conv5_x
(`layer4`) and the classifier train, with lr 0.001, weight decay 1e-5 and batches of 128, for
300 epochs. The paper reports 90.7 % video top-1 for this model on UCF-101 (mean of the three
splits).

Cost: 74 steps of 128 clips per epoch, 22,200 steps (2.84 M clips) in 300 epochs; the model does
19.1 GFLOP per 16-frame clip forward (`python benchmarks/model_costs.py`). Not yet timed on a
GPU.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_ucf101_finetune.py')

    # Model: the released ResNeXt-101 (shortcut B).
    config.model.arch = 'resnext'
    config.model.depth = 101
    config.model.shortcut = 'B'
    config.model.cardinality = 32
    config.model.num_classes = 101

    # Input: 16-frame clips, as the weights were trained on.
    config.input.clip_length = 16

    # Start from the imported Kinetics weights (the classifier already has 101 outputs).
    config.init_from = 'weights/resnext101_kinetics_ucf101'
    config.init_from_skip = ()

    # The author's fine-tuning: the last stage and the classifier, lr 0.001, weight decay 1e-5.
    config.optimizer.trainable = 'last_stage_and_head'
    config.optimizer.learning_rate = 0.001
    config.optimizer.weight_decay = 1e-5
    config.batch_size = 128
    config.num_epochs = 300
    return config
