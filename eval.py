"""Evaluates a checkpoint from a checkout; the command lives in `r3d_jax.cli.evaluate` (`r3d-eval`).

    python eval.py --config=configs/r18_ucf101.py --workdir=workdirs/r18_ucf101 --checkpoint=best
"""

from r3d_jax.cli import evaluate

if __name__ == '__main__':
    evaluate.run()
