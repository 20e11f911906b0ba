"""Ours against a PyTorch reference, stage by stage: `compare(...) -> ParityReport`.

    report = compare(flax_module, variables, torch_module, inputs, stages=DEFAULT_STAGES["torchvision"])
    report.ok, report.first_divergence, print(report.table()), report.to_json()

`stages` maps, in network order, each of our stages to the torch module whose output it must
equal: {stage: torch_module_name}. Our stages are the model's own capture names
(`GoogLeNet.capture_names()`: conv1 ... fc, aux1, aux2, and Inception parts such as
"inception4a/branch1x1"); a torch name is a key of `torch_module.named_modules()`. A fork that
adds a block `inception4f` after `inception4e` on both sides (and records it in its model's
stages) compares it with

    stages = insert_after(DEFAULT_STAGES["torchvision"], "inception4e", {"inception4f": "inception4f"})

and a fork that renames a block maps the new names: {"mixed_4a": "inception4a", ...}. A name
that its side's model lacks is a ValueError naming that side and the closest names it has.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import torch

from googlenet_jax.model import architecture
from googlenet_jax.parity import models
from googlenet_jax.parity.layers import flax_side, torch_side
from googlenet_jax.parity.layers.report import TOLERANCES, ParityReport, Row, compare_arrays
from googlenet_jax.weights import torch_layout

AUX_WEIGHT = 0.3  # the paper's weight of each auxiliary loss (the configs' aux_weight)
LABELS_SEED = 0
# Our convolutions and matmuls at full float32 precision: GPUs would otherwise use TF32 by
# default, far off the torch reference, which runs on the CPU in full float32 (how far:
# docs/parity.md, "Tolerances").
MATMUL_PRECISION = "highest"

# Where the references' module names differ from our stage names.
TORCH_NAMES = {"torchvision": {f"pool{i}": f"maxpool{i}" for i in range(1, 5)},
               "paper": {"lrn1": "norm1", "lrn2": "norm2"}}
# Our stage -> the reference's module, in the order the network computes them.
DEFAULT_STAGES = {variant: {stage: TORCH_NAMES[variant].get(stage, stage)
                            for stage in architecture.stage_names(variant)}
                  for variant in architecture.VARIANTS}
# Default stages that weights may lack (a state_dict without aux heads); left out then.
OPTIONAL_STAGES = ("aux1", "aux2")
# The stages the loss reads for --grads: the main head first, then the aux heads.
LOSS_STAGES = ("fc", "aux1", "aux2")

def _default_stages(variant: str, torch_module) -> dict[str, str]:
    """DEFAULT_STAGES[variant] without the optional stages the torch model does not have."""
    present = dict(torch_module.named_modules())
    return {stage: torch_name for stage, torch_name in DEFAULT_STAGES[variant].items()
            if stage not in OPTIONAL_STAGES or torch_name in present}


def insert_after(stages: Mapping[str, str], after: str, new: Mapping[str, str]) -> dict[str, str]:
    """A copy of `stages` with the `new` entries placed right after the stage `after`."""
    if after not in stages:
        raise ValueError(f"no stage {after!r} to insert after; stages: {', '.join(stages)}")
    out = {}
    for name, torch_name in stages.items():
        out[name] = torch_name
        if name == after:
            out.update(new)
    return out


def torchvision_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Our variables (or gradients in their place) as a torch state_dict of numpy arrays."""
    return torch_layout.flax_to_torchvision(variables, return_numpy=True)


def random_labels(count: int, num_classes: int, seed: int = LABELS_SEED) -> np.ndarray:
    """The fixed labels of --grads: `count` class ids drawn uniformly with `seed`."""
    return np.random.default_rng(seed).integers(0, num_classes, size=count)


def compare(flax_module, variables: Mapping[str, Any], torch_module, inputs: np.ndarray, *,
            stages: Mapping[str, str] | None = None, train: bool = False, grads: bool = False,
            dtype: str = "float32", labels: np.ndarray | None = None, aux_weight: float = AUX_WEIGHT,
            loss_stages: Sequence[str] = LOSS_STAGES, tolerance: float | None = None,
            to_state_dict: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] = torchvision_state_dict,
            ) -> ParityReport:
    """Runs both models on `inputs` and compares them stage by stage.

    flax_module, variables: our model and its {"params"[, "batch_stats"]}.
    torch_module: the reference holding the same weights (it is copied, never modified).
    inputs: float (N, H, W, 3) NHWC images, already preprocessed; torch gets them as NCHW.
    stages: {flax_path: torch_module_name} in network order (see the module docstring);
      default DEFAULT_STAGES[flax_module.variant], without the aux heads when the torch model
      has none. Stages that neither side runs (the aux heads in eval mode) are left out.
    train: train mode: batch statistics in BatchNorm, dropout off on both sides, aux heads on;
      adds the BatchNorm running statistics after the step (torch's means; for the variances
      Flax's rule, which mixes in the biased batch variance where torch uses the unbiased one).
    grads: implies train; adds the loss CE(main) + aux_weight * sum(CE(aux)) over
      `loss_stages` (main head first) and its gradient for every parameter. labels: (N,) ints,
      default `random_labels`.
    dtype: "float32", or "float64" (both sides compute in float64; ours under jax x64).
    tolerance: one relative tolerance for every row instead of TOLERANCES[dtype].
    to_state_dict: maps our variables (or gradients in place of params) to torch state_dict
      names; a fork whose parameters the converter does not know passes its own.
    Raises ValueError for a stage name that its side's model lacks (naming the closest ones).
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}, got {dtype!r}")
    train = train or grads
    if stages is None:
        stages = _default_stages(getattr(flax_module, "variant", "torchvision"), torch_module)
    stages = dict(stages)
    if grads and loss_stages[0] not in stages:
        raise ValueError(f"the loss reads stage {loss_stages[0]!r}, which is not among the stages")
    torch_side.check_names(torch_module, stages)
    inputs = np.asarray(inputs)
    if inputs.ndim != 4 or inputs.shape[-1] != 3:
        raise ValueError(f"inputs must be NHWC images (N, H, W, 3), got shape {inputs.shape}")
    tolerances = {kind: value if tolerance is None else tolerance
                  for kind, value in TOLERANCES[dtype].items()}
    random_fixed_labels = labels is None
    if grads and labels is None:
        labels = _default_labels(torch_module, stages, loss_stages[0], len(inputs))

    # Ours first: our model's own errors (an input too small for a head) are the clearer ones.
    with models.precision(dtype), jax.default_matmul_precision(MATMUL_PRECISION):
        module, cast = flax_side.ready(flax_module, dtype, train), models.cast_tree(variables, dtype)
        ours = flax_side.run(module, cast, inputs, stages, train=train, grads=grads, labels=labels,
                             aux_weight=aux_weight, loss_stages=loss_stages, dtype=dtype)
    net = models.torch_copy(torch_module, dtype, train)
    with torch.set_grad_enabled(grads):
        theirs = torch_side.run(net, inputs, stages, train, grads, labels, aux_weight, loss_stages, dtype)

    mode = "train" if train else "eval"
    rows = _output_rows(stages, ours["outputs"], theirs["outputs"], tolerances[mode])
    notes = [f"{dtype}, {mode} mode; relative error = ||ours - torch|| / ||torch||; ours on "
             f"{jax.default_backend()} at {MATMUL_PRECISION} matmul precision, torch on the CPU",
             "train mode: dropout off on both sides; BatchNorm normalises with batch statistics" if train
             else "eval mode: the aux heads run in train mode only (--train)"]
    if train and theirs["bn_inputs"]:
        our_stats = to_state_dict({**variables, "batch_stats": ours["batch_stats"]})
        rows += torch_side.running_statistic_rows(theirs, our_stats, tolerances["running statistic"])
        notes.append("running_mean is compared with torch's; running_var with Flax's rule, (1 - m) * old + "
                     "m * biased batch variance: torch mixes in the unbiased batch variance (n / (n - 1) "
                     "times larger), a documented difference")
    if grads:
        rows.append(compare_arrays("loss", "loss", ours["loss"], theirs["loss"], tolerances["loss"]))
        our_grads = to_state_dict({**variables, "params": ours["grads"]})
        rows += torch_side.gradient_rows(net, our_grads, tolerances["gradient"])
        notes += _loss_notes(loss_stages, ours["outputs"], aux_weight, labels, random_fixed_labels,
                             dtype, tolerances["gradient"])
    settings = {"dtype": dtype, "mode": mode, "grads": grads, "batch": int(inputs.shape[0]),
                "input_size": list(inputs.shape[1:3])}
    return ParityReport(rows, notes, settings)


def _loss_notes(loss_stages, outputs, aux_weight, labels, random_fixed_labels, dtype, tolerance) -> list[str]:
    aux = [f"CE({stage})" for stage in loss_stages[1:] if stage in outputs]
    loss = f"CE({loss_stages[0]})" + (f" + {aux_weight:g} * ({' + '.join(aux)})" if aux else "")
    labels_text = f"random fixed labels {np.asarray(labels).tolist()} (seed {LABELS_SEED})" \
        if random_fixed_labels else f"labels {np.asarray(labels).tolist()}"
    notes = [f"loss = {loss}, on {labels_text}"]
    if dtype == "float32":
        notes.append(f"float32 rounding alone moves gradients by up to a few 1e-2, so float32 fails only "
                     f"gross gradient errors (> {tolerance:g}); --dtype float64 gives the exact verdict")
    return notes


def _output_rows(stages, ours, theirs, tolerance) -> list[Row]:
    rows = []
    for stage in stages:
        if stage in ours and stage in theirs:
            rows.append(compare_arrays("output", stage, ours[stage], theirs[stage], tolerance))
        elif stage in ours or stage in theirs:  # one side ran it, the other did not
            side = "ours" if stage in ours else "torch"
            shape = (ours.get(stage) if stage in ours else theirs[stage]).shape
            rows.append(Row("output", stage, shape, math.inf, math.inf, tolerance,
                            f"only {side} computed this stage"))
    return rows


def _default_labels(torch_module, stages, main_stage, count) -> np.ndarray:
    """random_labels over the main head's classes (the width of its torch nn.Linear)."""
    head = dict(torch_module.named_modules())[stages[main_stage]]
    if not hasattr(head, "out_features"):
        raise ValueError(f"the main head {stages[main_stage]!r} is not a Linear layer; pass labels")
    return random_labels(count, head.out_features)
