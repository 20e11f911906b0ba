"""Weights files from one format to the other: a torchvision .pth <-> an orbax checkpoint, and
BVLC's .caffemodel -> an orbax checkpoint (`python -m googlenet_jax convert`). Either path may
be local or a gs:// URL; torch is imported only here and in torch_layout.py, when a .pth is
read or written.
"""
from __future__ import annotations

import io

from googlenet_jax.weights import info, loader, paths
from googlenet_jax.weights.files import load_variables, save_variables
from googlenet_jax.weights.torch_layout import (
    flax_to_torchvision,
    import_torch,
    load_torch_state_dict,
    torchvision_to_flax,
)


def pth_to_checkpoint(pth: str, checkpoint: str, variant: str) -> None:
    """Writes the .pth's (or a BVLC .caffemodel's: the paper variant) weights as an orbax
    checkpoint, with model_info.json beside the arrays (what predict, evaluate and export need,
    class names included)."""
    if pth.lower().endswith(loader.CAFFEMODEL_SUFFIX):
        variables, model_info = loader.load_caffemodel(pth)
    else:
        variables = torchvision_to_flax(load_torch_state_dict(pth), variant=variant)
        model_info = info.pretrained_info(variant, int(variables["params"]["fc"]["kernel"].shape[-1]),
                                          aux_logits="aux1" in variables["params"])
    save_variables(checkpoint, variables)
    info.write_model_info(checkpoint, model_info)


def checkpoint_to_pth(checkpoint: str, pth: str) -> None:
    """Writes an orbax checkpoint's weights as a torchvision state_dict; never overwrites `pth`."""
    if paths.exists(pth):
        raise ValueError(f"{pth}: already exists; refusing to overwrite it")
    state_dict = flax_to_torchvision(load_variables(checkpoint))
    if paths.is_url(pth):
        paths.check_bucket(pth)
        buffer = io.BytesIO()
        import_torch().save(state_dict, buffer)
        with paths.open_file(pth, "wb") as f:
            f.write(buffer.getvalue())
    else:
        import_torch().save(state_dict, pth)
