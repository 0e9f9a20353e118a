"""Every configuration field with the reference's defaults: the schema `r3d_jax.defaults`.

    python train.py --config=configs/default.py --workdir=workdirs/default

Each field is defined and commented in `r3d_jax/defaults.py`; the other recipes here start
from the same schema and change only what differs.
"""

from r3d_jax.defaults import get_config

__all__ = ['get_config']
