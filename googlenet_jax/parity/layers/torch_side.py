"""The torch side of a parity comparison: hooks on the reference's modules, its step, its rows.

Imports torch. The torch model comes from models.torch_copy, its inputs through models.to_nchw.
"""
from __future__ import annotations

import difflib
import functools
import math
from typing import Mapping

import numpy as np
import torch

from googlenet_jax.parity.layers.report import Row, compare_arrays
from googlenet_jax.parity.models import to_nchw


def check_names(torch_module, stages: Mapping[str, str]) -> None:
    names = dict(torch_module.named_modules())
    for stage, torch_name in stages.items():
        if torch_name not in names:
            close = difflib.get_close_matches(torch_name, list(names), n=3)
            children = ", ".join(name for name, _ in torch_module.named_children())
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"stage {stage!r}: the torch model has no module {torch_name!r}{hint} "
                             f"(its top-level modules: {children})")


def _record_outputs(torch_module, stages: Mapping[str, str], keep_graph: bool):
    """Forward hooks keeping each stage's first output; returns (outputs dict, hook handles)."""
    modules = dict(torch_module.named_modules())
    outputs, handles = {}, []
    for stage, torch_name in stages.items():
        def hook(_module, _args, output, stage=stage, torch_name=torch_name):
            if stage in outputs:
                return
            if not torch.is_tensor(output):
                raise ValueError(f"stage {stage!r}: torch module {torch_name!r} returns "
                                 f"{type(output).__name__}, not a tensor; map a module that returns one")
            outputs[stage] = output if keep_graph else output.detach()
        handles.append(modules[torch_name].register_forward_hook(hook))
    return outputs, handles


def _record_batch_norm_inputs(torch_module):
    """Each train-mode BatchNorm's input and running variance before the step, by module name."""
    inputs, old_vars, handles = {}, {}, []

    def hook(_module, args, _output, name):
        inputs.setdefault(name, args[0].detach())  # returns None: a hook's return value replaces the output

    for name, module in torch_module.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            old_vars[name] = module.running_var.detach().clone()
            handles.append(module.register_forward_hook(functools.partial(hook, name=name)))
    return inputs, old_vars, handles


def _as_nhwc(tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def run(net, inputs, stages, train, grads, labels, aux_weight, loss_stages, dtype):
    """torch's stage outputs (NHWC numpy), BatchNorm records, and with grads the loss."""
    outputs, handles = _record_outputs(net, stages, keep_graph=grads)
    bn_inputs, old_vars, bn_handles = _record_batch_norm_inputs(net) if train else ({}, {}, [])
    try:
        net(to_nchw(inputs, dtype))
    finally:
        for handle in handles + bn_handles:
            handle.remove()
    result = {"outputs": {stage: _as_nhwc(t) for stage, t in outputs.items()},
              "bn_inputs": bn_inputs, "old_vars": old_vars, "net": net}
    if grads:
        ce = torch.nn.functional.cross_entropy
        target = torch.from_numpy(np.asarray(labels, np.int64))
        loss = ce(outputs[loss_stages[0]], target)
        for stage in loss_stages[1:]:
            if stage in outputs:
                loss = loss + aux_weight * ce(outputs[stage], target)
        net.zero_grad()
        loss.backward()
        result["loss"] = loss.detach().numpy()
    return result


def running_statistic_rows(theirs, our_state_dict, tolerance) -> list[Row]:
    rows = []
    modules = dict(theirs["net"].named_modules())
    for name, x in theirs["bn_inputs"].items():
        module = modules[name]
        momentum = module.momentum
        if momentum is None:  # a cumulative average; Flax has no such mode
            continue
        x = x.double()
        batch_var = x.var(dim=[d for d in range(x.dim()) if d != 1], unbiased=False)
        flax_rule_var = (1 - momentum) * theirs["old_vars"][name].double() + momentum * batch_var
        for stat, expected in (("running_mean", module.running_mean), ("running_var", flax_rule_var)):
            key = f"{name}.{stat}"
            if key in our_state_dict:
                rows.append(compare_arrays("running statistic", key, our_state_dict[key],
                                            torch.as_tensor(expected).detach().numpy(), tolerance))
    return rows


def gradient_rows(net, our_grads: Mapping[str, np.ndarray], tolerance) -> list[Row]:
    rows = []
    for name, parameter in net.named_parameters():
        if parameter.grad is None:
            continue  # unused by this loss on the torch side
        if name not in our_grads:
            rows.append(Row("gradient", name, tuple(parameter.shape), math.inf, math.inf, tolerance,
                            "no gradient on our side"))
            continue
        rows.append(compare_arrays("gradient", name, our_grads[name], parameter.grad.numpy(), tolerance))
    return rows
