r"""ResNeXt-101 on 64-frame clips, fine-tuned on HMDB-51 split 1 from Kinetics-400 weights.

The recipe of `configs/resnext101_64f_ucf101_finetune.py` on HMDB-51 (51 classes, split 1). The
importer keeps the backbone of `resnext-101-64f-kinetics.pth` and gives the classifier 51 fresh
outputs; the data are built as for `configs/r18_hmdb51.py`:

    python -m r3d_jax.data.build --dataset=hmdb51 --videos_dir=hmdb51_org \
        --splits_dir=testTrainMulti_7030_splits --split=1 --data_dir=data/tfds \
        --frame_short_side=128
    python -m r3d_jax.convert_torch --checkpoint=resnext-101-64f-kinetics.pth \
        --config=configs/resnext101_64f_hmdb51_finetune.py \
        --output=weights/resnext101_64f_kinetics_hmdb51
    python train.py --config=configs/resnext101_64f_hmdb51_finetune.py \
        --workdir=workdirs/resnext101_64f_hmdb51_ft

The paper reports 70.2 % video top-1 for it on HMDB-51 (mean of the three splits).

Cost: 3,570 training videos make 27 steps of 128 clips per epoch, 8,100 steps (1.04 M clips) in
300 epochs; the model does 76.5 GFLOP per 64-frame clip forward (`python
benchmarks/model_costs.py` counts 16-frame clips, with 4x the work for 64 frames). Not yet timed
on a GPU.
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'resnext101_64f_ucf101_finetune.py')

    # Data: HMDB-51 split 1, 51 classes.
    config.data.dataset = 'hmdb51'
    config.data.split_number = 1
    config.model.num_classes = 51

    # Start from the Kinetics weights imported with a 51-class classifier.
    config.init_from = 'weights/resnext101_64f_kinetics_hmdb51'
    config.init_from_skip = ()
    return config
