"""Classifies video files from a checkout; the command lives in `r3d_jax.cli.predict`.

    python predict.py --checkpoint=CHECKPOINT_DIR --json_out=predictions.json a.avi b.mp4

Installed with the package, the same command is `r3d-predict`.
"""

from r3d_jax.cli import predict

if __name__ == '__main__':
    predict.run()
