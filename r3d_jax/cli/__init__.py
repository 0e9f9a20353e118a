"""The package's commands: each module holds one command's flags and `main`, and `run()`.

`r3d-train`, `r3d-eval` and `r3d-predict` (installed with the package) and the checkout's
`train.py`, `eval.py` and `predict.py` call `run()` of `train`, `evaluate` and `predict`. Only
absl and ml_collections load at import time: the dataset build's worker processes are spawned
and import the launching script again before they start.
"""
