r"""ResNet-200 trained from scratch on Kinetics-400 with the reference's recipe.

    python -m r3d_jax.data.build --dataset=kinetics --kinetics_version=400 \
        --videos_dir=kinetics400/videos --train_csv=kinetics400/annotations/train.csv \
        --val_csv=kinetics400/annotations/val.csv --data_dir=data/tfds --frame_short_side=128
    python train.py --config=configs/r200_kinetics400.py --workdir=workdirs/r200_kinetics400

Everything but the model is `configs/r18_kinetics400.py` (the same dataset build). The paper
trains ResNets of 18 to 200 layers on Kinetics: it supports training up to 152 layers, as
ImageNet does for 2D ResNets. Shortcut B, as the reference's released Kinetics ResNet-200.

Cost: 375,000 steps of 128 clips in 200 epochs, as for ResNet-18; ResNet-200's speed has not
been measured (ResNet-18's 3.8-5.8 hours at ~2,300-3,500 clips/s on one H200, README "Speed",
is a lower bound: every deeper model does more work per clip).
"""

import ml_collections

from r3d_jax import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.recipe_beside(__file__, 'r18_kinetics400.py')
    # ResNet-200: bottleneck blocks [3, 24, 36, 3], projection (type-B) shortcuts.
    config.model.depth = 200
    config.model.shortcut = 'B'
    return config
