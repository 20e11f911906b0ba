"""Reference PyTorch models with random weights, for the parity tests.

torchvision's googlenet is the reference of the "torchvision" variant; the torch.nn port of
BVLC Caffe in caffe_googlenet_torch.py is the reference of the "paper" variant.
"""
import math

import numpy as np
import torch
import torchvision

from caffe_googlenet_torch import CaffeGoogLeNet


def build(variant: str, *, num_classes=1000, aux_logits=True, transform_input=False,
          dropout=None, dropout_aux=0.7, seed=0):
    """A reference model with every weight, bias and BN statistic randomised (float32)."""
    if variant == "torchvision":
        net = torchvision.models.googlenet(
            weights=None, num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
            init_weights=False, dropout=0.2 if dropout is None else dropout, dropout_aux=dropout_aux)
    else:
        net = CaffeGoogLeNet(num_classes, aux_logits, 0.4 if dropout is None else dropout, dropout_aux)
    randomize_(net, seed)
    return net


def randomize_(net: torch.nn.Module, seed: int) -> None:
    """Random weights that keep activations at a healthy scale through the whole net.

    Convs and linears get He-scaled normals (so ReLU stacks neither vanish nor explode), biases
    and BN affine terms are non-trivial, and BN running statistics are far from (0, 1), so a
    swapped mean/var or scale/bias shows in the output.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std):
        return torch.randn(shape, generator=generator) * std

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight.shape, math.sqrt(2.0 / fan_in)))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(normal(module.bias.shape, 0.2))
                module.running_mean.copy_(normal(module.running_mean.shape, 0.2))
                module.running_var.copy_(uniform(module.running_var.shape, 0.5, 2.0))


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
