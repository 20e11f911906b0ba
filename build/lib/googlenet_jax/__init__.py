"""GoogLeNet (Inception v1) in JAX/Flax: the paper's network and torchvision's, exactly."""
from googlenet_jax.model import GoogLeNet, GoogLeNetOutputs

__all__ = ["GoogLeNet", "GoogLeNetOutputs"]
