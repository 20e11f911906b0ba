"""timm's `feature_info` for GoogLeNet: each stage's channels, stride and shape, traced abstractly."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from googlenet_jax.model import architecture as arch


class StageInfo(NamedTuple):
    """One stage's output for a square `image_size` input: `shape` without the batch axis
    ((H, W, C) for maps, (C,) for avgpool and fc), `channels` its last axis and `reduction`
    how many input pixels one output pixel spans (None for avgpool and fc)."""

    name: str
    shape: tuple[int, ...]
    channels: int
    reduction: int | None


def stage_info(model, image_size: int = 224, stages=None) -> list[StageInfo]:
    """StageInfo for `stages` (default: every backbone stage, then avgpool and fc) of a
    GoogLeNet, in network order. Nothing is allocated: the model is traced with
    `jax.eval_shape`, so this is exact for any input size the model takes."""
    names = tuple(stages or arch.backbone_stages(model.variant) + ("avgpool", "fc"))
    model = model.clone(aux_logits=False) if not any(n.startswith("aux") for n in names) else model
    image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    _, captured = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x, train=False, capture=names)[0], image)
    reductions = _reductions(model)
    info = []
    for name in names:
        if name not in captured:
            continue  # the aux heads: they run in train mode only
        shape = tuple(captured[name].shape[1:])
        info.append(StageInfo(name, shape, shape[-1], reductions.get(name.split("/")[0])))
    return info


def _reductions(model) -> dict[str, int]:
    """Backbone stage -> the product of the strides up to it (2 for conv1 ... 32 for 5b)."""
    reductions, total = {}, 1
    for name, block in model.backbone():
        total *= block.stride
        reductions[name] = total
    return reductions
