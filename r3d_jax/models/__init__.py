"""The model family: 3D ResNets of depth 10 to 200 built from `config.model`."""

from r3d_jax.models.resnet3d import ResNet3D, create_model, init_variables

__all__ = ['ResNet3D', 'create_model', 'init_variables']
