"""Reference PyTorch models with random weights, for the parity tests.

torchvision's googlenet is the reference of the "torchvision" variant; the torch.nn port of
BVLC Caffe (googlenet_jax.caffe_torch) is the reference of the "paper" variant. The models
live in the package (googlenet_jax.torch_reference, which `python -m googlenet_jax.parity`
also uses); the array helpers below are the tests' own.
"""
import numpy as np
import torch

from googlenet_jax.torch_reference import build, randomize_  # noqa: F401  (re-exported for the tests)


def state_dict_numpy(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random NHWC float32 images, roughly ImageNet-normalised."""
    return np.random.default_rng(seed).standard_normal((n, height, width, 3)).astype(np.float32)


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| (L2 over all elements)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))
