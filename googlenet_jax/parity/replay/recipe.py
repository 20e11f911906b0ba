"""A training config as the torch side of `parity --train_steps` runs it: every field it reads,
mapped to its torch counterpart, and a one-line refusal for a field it cannot map.

    recipe = torch_recipe(config, learning_rates, decayed)   # TorchRecipe
    check_mappable(config)                                   # raises UsageError

Imports neither torch nor JAX: the mapping is data, read by replay/torch_loop.py
and printed in the report and docs/parity.md.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from googlenet_jax.commands.common import UsageError

# Every config field the training comparison reads, and what stands for it on the torch side.
FIELD_MAP = {
    "optimizer.name": '"sgd": torch.optim.SGD (dampening 0); "lars": a LARS step written in torch '
                      "as optax.lars computes it (torch has none): decayed gradient, trust ratio on "
                      "kernels, learning rate, then momentum",
    "optimizer.learning_rate, lr_reference_batch_size, schedule, warmup_epochs, decay_epochs, "
    "decay_factor, end_learning_rate, poly_power":
        "the learning rate of each step, exactly the value our step applies, set on every torch "
        "param group before its step (torch schedulers step per epoch; ours per step)",
    "optimizer.momentum, optimizer.nesterov": "SGD momentum, nesterov",
    "optimizer.weight_decay, optimizer.weight_decay_params":
        "SGD weight_decay (coupled, added to the gradient) on one param group holding exactly the "
        "tensors we decay, weight_decay 0 on the other",
    "optimizer.trust_coefficient": "the LARS step's trust coefficient",
    "optimizer.grad_clip_norm": "global-norm clipping as optax does it, g * c / norm(g) when norm(g) >= c "
                                "(torch.nn.utils.clip_grad_norm_ divides by norm(g) + 1e-6)",
    "label_smoothing": "torch.nn.CrossEntropyLoss(label_smoothing=...)",
    "aux_weight": "loss = CE(main) + aux_weight * CE(aux1) + aux_weight * CE(aux2), summed in that order",
    "ema_decay": "our Polyak average written out in torch: d = min(ema_decay, (1 + t) / (10 + t)) in "
                 "float32, e += (1 - d) (p - e) after step t (torch's AveragedModel, and the reference's "
                 "--model-ema, copy at the first update and average the buffers too)",
    "model.variant": 'torchvision.models.googlenet, or for "paper" the Caffe port '
                     "(googlenet_jax/parity/caffe_torch.py)",
    "model.transform_input": "transform_input",
    "model.bn_running_var": '"unbiased": torch\'s own BatchNorm; "biased": a forward hook that '
                            "re-mixes torch's running_var with the biased batch variance",
    "model.dropout_rate, model.aux_dropout_rate": "0 on both sides (the two frameworks draw different masks)",
    "model.dtype": "replaced by --dtype on both sides",
    "num_classes, image_size, batch_size": "the fc width, --image_size and --batch_size on both sides",
}
# Fields that change training and that the torch side cannot follow: value -> why not.
UNMAPPABLE = {"freeze_up_to": ("", "frozen stages (freeze_up_to) have no counterpart in the torch loop")}


@dataclasses.dataclass(frozen=True)
class TorchRecipe:
    """What the torch loop does at each step (torch_loop.train reads only this)."""

    learning_rates: tuple[float, ...]  # per step, the values our step applied
    optimizer: str  # "sgd" or "lars"
    momentum: float
    nesterov: bool
    weight_decay: float
    decayed: frozenset[str]  # torch names of the parameters that get weight decay
    trust_coefficient: float
    trust_ratio: frozenset[str]  # LARS: torch names of the parameters with a trust ratio
    grad_clip_norm: float
    label_smoothing: float
    aux_weight: float
    ema_decay: float
    bn_running_var: str  # "biased" or "unbiased"


def check_mappable(config) -> None:
    """UsageError (one line) for a config field the torch side cannot follow."""
    for field, (neutral, why) in UNMAPPABLE.items():
        if config[field] != neutral:
            raise UsageError(f"config.{field}={config[field]!r}: {why}; training parity needs "
                             f"config.{field}={neutral!r}")


def torch_recipe(config, learning_rates: Sequence[float], decayed: Sequence[str],
                 kernels: Sequence[str]) -> TorchRecipe:
    """The recipe of `config`; `decayed` and `kernels` are torch parameter names (the tensors our
    optimizer decays, and those with rank > 1, which get LARS's trust ratio)."""
    check_mappable(config)
    opt = config.optimizer
    return TorchRecipe(
        learning_rates=tuple(float(lr) for lr in learning_rates), optimizer=opt.name,
        momentum=float(opt.momentum), nesterov=bool(opt.nesterov), weight_decay=float(opt.weight_decay),
        decayed=frozenset(decayed), trust_coefficient=float(opt.trust_coefficient),
        trust_ratio=frozenset(kernels), grad_clip_norm=float(opt.grad_clip_norm),
        label_smoothing=float(config.label_smoothing), aux_weight=float(config.aux_weight),
        ema_decay=float(config.ema_decay), bn_running_var=config.model.bn_running_var)
