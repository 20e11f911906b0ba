"""Learning-rate schedule and optax optimizer (SGD or LARS with momentum, masked weight decay,
frozen stages)."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Sequence

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:  # configs are only read here; the model and steps run without ml_collections
    import ml_collections

SCHEDULES = ("cosine", "polynomial", "step", "constant")  # config.optimizer.schedule
OPTIMIZERS = ("sgd", "lars")  # config.optimizer.name
# config.optimizer.weight_decay_params: which parameters weight decay applies to.
# "kernels": conv and dense kernels (ours); "all_but_batchnorm": kernels and biases, not the
# BatchNorm scales and offsets (torchvision's reference `--norm-weight-decay 0`); "all":
# every parameter (torch.optim.SGD on model.parameters(), the reference's default).
WEIGHT_DECAY_PARAMS = ("kernels", "all_but_batchnorm", "all")


def learning_rate(config: ml_collections.ConfigDict) -> float:
    """The peak learning rate: the config's rate scaled linearly to the global batch."""
    opt = config.optimizer
    return opt.learning_rate * config.batch_size / opt.lr_reference_batch_size


def create_learning_rate_fn(config: ml_collections.ConfigDict, steps_per_epoch: float,
                            num_train_steps: int) -> optax.Schedule:
    """step -> learning rate: linear warmup from 0, then the main schedule.

    "cosine" and "polynomial" decay from the peak to `end_learning_rate` at the last step
    ("polynomial": end + (peak - end) * (1 - t / T) ** poly_power over the T steps after
    the warmup, as large-batch LARS runs use); "step" multiplies the rate by `decay_factor`
    every `decay_epochs` epochs (the paper: x0.96 every 8 epochs); "constant" keeps the peak.
    """
    opt = config.optimizer
    peak = learning_rate(config)
    warmup_steps = int(round(opt.warmup_epochs * steps_per_epoch))
    decay_steps = max(1, num_train_steps - warmup_steps)
    if opt.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps, alpha=_end_fraction(opt, peak))
    elif opt.schedule == "polynomial":
        main = optax.polynomial_schedule(peak, opt.end_learning_rate, opt.poly_power, decay_steps)
    elif opt.schedule == "step":
        main = optax.exponential_decay(
            peak, transition_steps=max(1, int(round(opt.decay_epochs * steps_per_epoch))),
            decay_rate=opt.decay_factor, staircase=True)
    else:
        main = optax.constant_schedule(peak)
    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def _end_fraction(opt: ml_collections.ConfigDict, peak: float) -> float:
    """optax's cosine `alpha`: the final rate as a fraction of the peak."""
    return opt.end_learning_rate / peak if peak > 0 else 0.0


def kernel_mask(params: Any) -> Any:
    """True for conv and dense kernels; False for biases and BatchNorm scales/offsets (every
    parameter of rank 1)."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def weight_decay_mask(params: Any, which: str = "kernels") -> Any:
    """True for the parameters that get weight decay (`which`: WEIGHT_DECAY_PARAMS)."""
    if which == "kernels":
        return kernel_mask(params)
    if which == "all_but_batchnorm":  # a BatchNorm's parameters live under a module named "bn"
        return jax.tree_util.tree_map_with_path(
            lambda path, _: not any(getattr(key, "key", None) == "bn" for key in path), params)
    if which == "all":
        return jax.tree.map(lambda _: True, params)
    raise ValueError(f"weight_decay_params must be one of {WEIGHT_DECAY_PARAMS}, got {which!r}")


def create_optimizer(config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule, *,
                     frozen: Sequence[str] = ()) -> optax.GradientTransformation:
    """config.optimizer.name: "sgd" or "lars", after optional global-norm clipping.

    "sgd": momentum SGD with coupled (L2, as in torch.optim.SGD) weight decay on the
    parameters `optimizer.weight_decay_params` names (kernels by default).
    "lars" (You et al. 2017, as optax.lars): the decayed gradient g + wd * w of each kernel is
    rescaled by the trust ratio trust_coefficient * |w| / |g + wd * w|, then scaled by the
    learning rate and accumulated with momentum; biases and BatchNorm parameters get no trust
    ratio (plain momentum SGD), as in large-batch ImageNet runs, and weight decay only where
    `weight_decay_params` says.
    `frozen` top-level modules (the stages of `config.freeze_up_to`) get no update at all, not
    even weight decay: optax.multi_transform sends them to set_to_zero.
    """
    opt = config.optimizer
    decay_mask = functools.partial(weight_decay_mask, which=opt.weight_decay_params)
    parts = []
    if opt.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if opt.name == "lars":
        parts.append(optax.lars(learning_rate_fn, weight_decay=opt.weight_decay,
                                weight_decay_mask=decay_mask,
                                trust_coefficient=opt.trust_coefficient,
                                trust_ratio_mask=kernel_mask, momentum=opt.momentum,
                                nesterov=opt.nesterov))
    else:
        if opt.weight_decay > 0:
            parts.append(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask))
        parts.append(optax.sgd(learning_rate_fn, momentum=opt.momentum or None,
                               nesterov=opt.nesterov))
    tx = optax.chain(*parts)
    if not frozen:
        return tx

    def labels(params):
        return {name: _labelled(tree, "frozen" if name in frozen else "trained") for name, tree in params.items()}

    return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def _labelled(tree: Any, label: str) -> Any:
    """`tree` with every leaf replaced by `label` (optax.multi_transform's labels)."""
    return jax.tree.map(lambda _: label, tree)
