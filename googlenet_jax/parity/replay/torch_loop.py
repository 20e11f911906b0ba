"""The torch side of `parity --train_steps`: a plain torch training loop that follows a TorchRecipe.

    run = train(net, recipe, images, labels, dtype="float64")
    run.losses, run.state_dict, run.momentum, run.ema

Nothing here is derived from our code: torch.optim.SGD, torch's BatchNorm and CrossEntropyLoss
do the work, and what torch lacks (LARS, our clipping and Polyak formulas, Flax's running
variance) is written out below in a few lines each, as FIELD_MAP in replay/recipe.py says.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from googlenet_jax.parity import models
from googlenet_jax.parity.replay.recipe import TorchRecipe


@dataclasses.dataclass
class TorchRun:
    losses: list[float]  # the training loss of each step, before its update
    first_update: tuple[int, dict[str, np.ndarray]] | None  # (step, parameters after it): the first
    # step with a learning rate > 0
    state_dict: dict[str, np.ndarray]  # parameters and BatchNorm buffers after the last step
    momentum: dict[str, np.ndarray]  # momentum buffer of each parameter (empty without momentum)
    ema: dict[str, np.ndarray]  # Polyak average of each parameter (empty when off)
    net: torch.nn.Module  # the trained model, in train mode


def train(torch_module: torch.nn.Module, recipe: TorchRecipe, images: np.ndarray, labels: np.ndarray, *,
          dtype: str, lr_scale: float = 1.0) -> TorchRun:
    """len(images) steps of `recipe` on a copy of `torch_module` (left untouched).

    images: (steps, B, H, W, 3) NHWC, fed as NCHW; labels: (steps, B) ints. `lr_scale`
    multiplies every learning rate (the last-bit perturbation of the drift baseline).
    """
    net = models.torch_copy(torch_module, dtype, train=True)  # dropout off
    params = dict(net.named_parameters())
    flax_rule = _FlaxRunningVariance(net) if recipe.bn_running_var == "biased" else None
    optimizer = _optimizer(params, recipe) if recipe.optimizer == "sgd" else None
    lars_buffers: dict[str, torch.Tensor] = {}
    ema = {name: p.detach().clone() for name, p in params.items()} if recipe.ema_decay > 0 else {}
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    losses, first_update = [], None
    try:
        for step, (x, y) in enumerate(zip(images, labels)):
            main, aux1, aux2 = _heads(net(models.to_nchw(x, dtype)))
            target = torch.from_numpy(np.asarray(y, np.int64))
            loss = criterion(main, target)
            for aux in (aux1, aux2):  # ours adds them in this order
                loss = loss + recipe.aux_weight * criterion(aux, target)
            losses.append(float(loss.detach()))
            net.zero_grad(set_to_none=True)
            loss.backward()
            if flax_rule is not None:
                flax_rule.apply()
            learning_rate = recipe.learning_rates[step] * lr_scale
            with torch.no_grad():
                if recipe.grad_clip_norm > 0:
                    _clip_like_optax(params.values(), recipe.grad_clip_norm)
                if optimizer is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate
                    optimizer.step()
                else:
                    _lars_step(params, lars_buffers, recipe, learning_rate)
                if ema:
                    _polyak_update(ema, params, recipe.ema_decay, step)
                if first_update is None and learning_rate > 0:
                    first_update = (step + 1, {name: p.detach().numpy().copy() for name, p in params.items()})
    finally:
        if flax_rule is not None:
            flax_rule.remove()
    momentum = ({name: optimizer.state[p]["momentum_buffer"] for name, p in params.items()
                 if optimizer.state[p].get("momentum_buffer") is not None} if optimizer is not None
                else lars_buffers)
    as_numpy = lambda tensors: {k: v.detach().numpy().copy() for k, v in tensors.items()}  # noqa: E731
    return TorchRun(losses=losses, first_update=first_update, state_dict=as_numpy(net.state_dict()),
                    momentum=as_numpy(momentum), ema=as_numpy(ema), net=net)


def _heads(outputs):
    """(main, aux1, aux2): torchvision returns (logits, aux2, aux1), the Caffe port (logits, aux1, aux2)."""
    if hasattr(outputs, "aux_logits1"):
        return outputs.logits, outputs.aux_logits1, outputs.aux_logits2
    return outputs


def _optimizer(params: dict[str, torch.Tensor], recipe: TorchRecipe) -> torch.optim.SGD:
    groups = [{"params": [p for n, p in params.items() if n in recipe.decayed], "weight_decay": recipe.weight_decay},
              {"params": [p for n, p in params.items() if n not in recipe.decayed], "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=0.0, momentum=recipe.momentum,
                           dampening=0.0, nesterov=recipe.nesterov)


def _clip_like_optax(params, max_norm: float) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    if not norm < max_norm:
        for g in grads:
            g.copy_(g / norm * max_norm)


def _lars_step(params, buffers, recipe: TorchRecipe, learning_rate: float) -> None:
    """optax.lars: g + wd p (decayed tensors), times tc |p| / |g + wd p| (kernels, 1 where a norm
    is 0), times -lr, then momentum: buf = u + m buf; p += buf (or u + m buf with Nesterov)."""
    for name, p in params.items():
        if p.grad is None:
            continue
        update = p.grad + recipe.weight_decay * p if name in recipe.decayed else p.grad.clone()
        if name in recipe.trust_ratio:
            p_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
            if p_norm > 0 and u_norm > 0:
                update = update * (recipe.trust_coefficient * p_norm / u_norm)
        update = -learning_rate * update
        if recipe.momentum:
            buffer = buffers[name] = update + recipe.momentum * buffers[name] if name in buffers else update
            update = update + recipe.momentum * buffer if recipe.nesterov else buffer
        p.add_(update)


def _polyak_update(ema, params, ema_decay: float, step: int) -> None:
    # Our decay and 1 - decay, both rounded to float32 as our step computes them.
    decay = np.minimum(np.float32(ema_decay), np.float32(1 + step) / np.float32(10 + step))
    weight = float(np.float32(1) - decay)
    for name, average in ema.items():
        average.add_(weight * (params[name].detach() - average))


class _FlaxRunningVariance:
    """Flax's running variance on torch's BatchNorm: old * (1 - m) + m * biased batch variance.

    Hooks record each train-mode BatchNorm's running variance before its forward and the biased
    variance of its input; `apply()` writes the mix after the backward pass (autograd keeps the
    running variance for BatchNorm's backward, so it must not change before then).
    """

    def __init__(self, net):
        self.records, self.hooks = [], []
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                self.hooks.append(module.register_forward_pre_hook(self._before))
                self.hooks.append(module.register_forward_hook(self._after))

    def _before(self, module, _args):
        module._flax_old_running_var = module.running_var.detach().clone()

    def _after(self, module, args, _output):
        x = args[0].detach()
        batch_var = x.var(dim=[d for d in range(x.dim()) if d != 1], unbiased=False)
        self.records.append((module, module._flax_old_running_var, batch_var))

    def apply(self) -> None:
        for module, old, batch_var in self.records:
            module.running_var.copy_((1 - module.momentum) * old + module.momentum * batch_var)
        self.records.clear()

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
