"""Trains a 3D ResNet from a checkout; the command lives in `r3d_jax.cli.train` (`r3d-train`).

    python train.py --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101

Kept this light on purpose: the dataset build's spawned workers import this script again.
"""

from r3d_jax.cli import train

if __name__ == '__main__':
    train.run()
