"""Learning-rate schedule and optax optimizer (SGD with momentum, masked weight decay, frozen stages)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:  # configs are only read here; the model and steps run without ml_collections
    import ml_collections

SCHEDULES = ("cosine", "step", "constant")  # config.optimizer.schedule


def learning_rate(config: ml_collections.ConfigDict) -> float:
    """The peak learning rate: the config's rate scaled linearly to the global batch."""
    opt = config.optimizer
    return opt.learning_rate * config.batch_size / opt.lr_reference_batch_size


def create_learning_rate_fn(config: ml_collections.ConfigDict, steps_per_epoch: int,
                            num_train_steps: int) -> optax.Schedule:
    """step -> learning rate: linear warmup, then "cosine" to 0, "step" decay or "constant".

    The "step" schedule multiplies the rate by `decay_factor` every `decay_epochs` epochs
    (the paper: x0.96 every 8 epochs).
    """
    opt = config.optimizer
    peak = learning_rate(config)
    warmup_steps = int(round(opt.warmup_epochs * steps_per_epoch))
    decay_steps = max(1, num_train_steps - warmup_steps)
    if opt.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps)
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


def weight_decay_mask(params: Any) -> Any:
    """True for the parameters that get weight decay: conv and dense kernels only.

    Biases and BatchNorm scales/offsets (every parameter of rank 1) are not decayed.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def create_optimizer(config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule, *,
                     frozen: Sequence[str] = ()) -> optax.GradientTransformation:
    """SGD with momentum and coupled (L2, as in torch.optim.SGD) masked weight decay.

    `frozen` top-level modules (the stages of `config.freeze_up_to`) get no update at all, not
    even weight decay: optax.multi_transform sends them to set_to_zero.
    """
    opt = config.optimizer
    parts = []
    if opt.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if opt.weight_decay > 0:
        parts.append(optax.add_decayed_weights(opt.weight_decay, mask=weight_decay_mask))
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
