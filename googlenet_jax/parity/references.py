"""The PyTorch reference of each variant, with random weights or a state_dict's.

    build(variant, *, num_classes=1000, aux_logits=True, ...) -> torch.nn.Module (random weights)
    from_state_dict(state_dict, variant) -> torch.nn.Module holding exactly those weights

"torchvision" is torchvision's own `googlenet`; "paper" is the torch.nn port of BVLC Caffe
(googlenet_jax.caffe_torch). Both take torchvision-layout state_dicts. Needs PyTorch and
torchvision; the package imports this module only where a torch reference is asked for.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torchvision

from googlenet_jax.parity.caffe_torch import CaffeGoogLeNet

DEFAULT_DROPOUT = {"torchvision": 0.2, "paper": 0.4}


def build(variant: str, *, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
          dropout: float | None = None, dropout_aux: float = 0.7, seed: int = 0) -> torch.nn.Module:
    """A reference model with every weight, bias and BN statistic randomised (float32)."""
    net = _empty(variant, num_classes, aux_logits, transform_input, dropout, dropout_aux)
    randomize_(net, seed)
    return net


def from_state_dict(state_dict: Mapping[str, torch.Tensor], variant: str, *,
                    transform_input: bool = False) -> torch.nn.Module:
    """The reference model holding `state_dict` (strictly); aux heads and num_classes follow its keys."""
    aux_logits = any(key.startswith(("aux1.", "aux2.")) for key in state_dict)
    num_classes = int(state_dict["fc.weight"].shape[0])
    net = _empty(variant, num_classes, aux_logits, transform_input, None, 0.7)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()}, strict=True)
    return net


def _empty(variant, num_classes, aux_logits, transform_input, dropout, dropout_aux) -> torch.nn.Module:
    if variant not in DEFAULT_DROPOUT:
        raise ValueError(f"variant must be one of {sorted(DEFAULT_DROPOUT)}, got {variant!r}")
    dropout = DEFAULT_DROPOUT[variant] if dropout is None else dropout
    if variant == "torchvision":
        return torchvision.models.googlenet(
            weights=None, num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
            init_weights=False, dropout=dropout, dropout_aux=dropout_aux)
    if transform_input:
        raise ValueError("transform_input is a torchvision option; the paper variant has none")
    return CaffeGoogLeNet(num_classes, aux_logits, dropout, dropout_aux)


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
