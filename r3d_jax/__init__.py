"""r3d-jax: 3D ResNets for video action recognition in JAX/Flax."""
