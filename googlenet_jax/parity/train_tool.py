"""What `python -m googlenet_jax.parity --train_steps N` runs: the same training run in torch and in
ours, from the same weights on the same batches, and the report comparing them step by step.

    report = run(args)                       # train_report.TrainParityReport
    side = train_our_side(args)              # our run, once; then the torch side, any number of times:
    compare(side, edit_recipe=f)             # f(TorchRecipe) -> TorchRecipe: a deliberate difference

Beside our drift from torch it measures the drift of two correct trainers: the same torch run
with every learning rate changed in its last bits (BASELINE_PERTURBATION), so a reader can tell
"as close as two correct trainers get" from "a different recipe". Import it before anything
imports TensorFlow (torchvision crashes when imported after it).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import numpy as np

from googlenet_jax import cli
from googlenet_jax.cli import UsageError
from googlenet_jax.model import architecture
from googlenet_jax.parity import flax_side, references, train_ours, train_torch
from googlenet_jax.parity.report import compare_arrays
from googlenet_jax.parity.train_recipe import TorchRecipe, check_mappable, torch_recipe
from googlenet_jax.parity.train_report import TrainParityReport, rel_error
from googlenet_jax.training import optim
from googlenet_jax.weights import torch_layout

DEFAULT_CONFIG = os.path.join("configs", "imagenet_torchvision.py")
# Relative tolerance of each kind of row: max(floor, BASELINE_FACTOR x the baseline's drift in
# the same row, measured in the same run). float64 (docs/parity.md, "Training parity"): a fixed
# verdict, 12 to 100 times the largest drift of a correct run over 20 steps of batch 8 at 64x64
# (losses 8e-11, parameters 1.5e-10, running statistics 5e-10, eval logits 6e-10; momentum
# buffers, sums of gradients, 4e-9 against 1e-7). float32: every operation rounds differently
# on the two sides, and within a few steps BatchNorm over small maps amplifies that to percents;
# two torch runs part as far (the baseline), so float32 rows are judged against the baseline:
# only a gross error fails.
TRAIN_TOLERANCES = {
    "float64": {"step loss": 1e-8, "parameter after the first update": 1e-8, "parameter": 1e-8,
                "momentum buffer": 1e-7, "running statistic": 1e-8, "Polyak average": 1e-8, "eval logits": 1e-8},
    "float32": {"step loss": 5e-3, "parameter after the first update": 1e-5, "parameter": 1e-3,
                "momentum buffer": 1e-2, "running statistic": 1e-3, "Polyak average": 1e-3, "eval logits": 5e-3},
}
BASELINE_FACTOR = {"float64": 0.0, "float32": 100.0}
# The baseline run's learning rates are ours times (1 + this): a change in their last bits.
BASELINE_PERTURBATION = {"float64": 1e-13, "float32": 1e-6}
IMAGES_SEED_OFFSET = 1_000  # random images come from seed + this, the labels from seed


def _config(args):
    config = cli.load_config(args.config or DEFAULT_CONFIG, args.overrides, "parity")
    from googlenet_jax.training import config as config_lib

    try:
        config_lib.validate_config(config)
    except config_lib.ConfigError as error:
        raise UsageError(str(error)) from None
    check_mappable(config)
    return config


def _models(args, config):
    """(torch reference, our variables, variant, text): --weights, else random He-scaled weights."""
    transform_input = config.model.transform_input
    if args.weights:
        state_dict = torch_layout.load_torch_state_dict(args.weights)
        variant = torch_layout.detect_variant(state_dict)
        if not any(key.startswith("aux1.") for key in state_dict):
            raise UsageError(f"{args.weights}: no aux heads (aux1.*, aux2.*); training uses them")
        torch_net = references.from_state_dict(state_dict, variant, transform_input=transform_input)
        described = args.weights
    else:
        variant = config.model.variant
        torch_net = references.build(variant, num_classes=config.num_classes, transform_input=transform_input,
                                     seed=args.seed)
        statistics = ", randomised BatchNorm statistics" if variant == "torchvision" else ""
        described = f"random (He-scaled{statistics}, seed {args.seed})"
    if variant != config.model.variant:
        raise UsageError(f"{args.weights} holds the {variant} variant but config.model.variant is "
                         f"{config.model.variant!r}")
    state_dict = {k: v.detach().double().numpy() if v.is_floating_point() else v.numpy()
                  for k, v in torch_net.state_dict().items()}
    variables = torch_layout.torchvision_to_flax(state_dict, variant=variant)
    return torch_net, variables, variant, described


def _batches(args, config, num_classes: int):
    """(images (steps + 1, B, S, S, 3), labels (steps + 1, B), text); the last batch is held back."""
    shape = (args.train_steps + 1, args.batch_size)
    labels = np.random.default_rng(args.seed).integers(0, num_classes, size=shape)
    if not args.images:
        rng = np.random.default_rng(args.seed + IMAGES_SEED_OFFSET)
        images = rng.standard_normal((*shape, args.image_size, args.image_size, 3))
        return images, labels, f"random normal images, {args.image_size}x{args.image_size}"
    import tensorflow as tf  # after torch (see the module docstring)

    from googlenet_jax.data import pipeline

    augment = pipeline.AugmentConfig(**config.augment.to_dict())
    images = np.empty((*shape, args.image_size, args.image_size, 3), np.float64)
    for index in range(images.shape[0] * images.shape[1]):
        path = args.images[index % len(args.images)]
        with open(path, "rb") as f:
            encoded = tf.constant(f.read())
        seed = tf.constant([args.seed, index], tf.int64)
        try:
            image = pipeline.train_preprocess(encoded, seed, image_size=args.image_size,
                                          normalization=config.normalization, augment=augment)
        except tf.errors.InvalidArgumentError as error:
            raise UsageError(f"{path}: not a decodable image ({cli.first_line(error)})") from None
        images[divmod(index, args.batch_size)] = image.numpy()
    return images, labels, (f"{len(args.images)} image file(s) through the train-time preprocessing "
                            f"(config.augment, {config.normalization} normalisation), "
                            f"{args.image_size}x{args.image_size}; random labels")


def _names(variables) -> dict[str, list[str]]:
    """Torch names of the parameters by role: "decayed" by each rule, "kernels" (rank > 1)."""
    def masked(mask_tree):
        as_arrays = {**variables, "params": jax.tree.map(lambda keep, p: np.full(np.shape(p), float(keep)),
                                                         mask_tree, variables["params"])}
        flags = torch_layout.flax_to_torchvision(as_arrays, return_numpy=True)
        return sorted(name for name in parameter_names(variables) if np.all(flags[name] == 1.0))

    return {"kernels": masked(optim.kernel_mask(variables["params"])),
            **{rule: masked(optim.weight_decay_mask(variables["params"], rule))
               for rule in optim.WEIGHT_DECAY_PARAMS}}


def parameter_names(variables) -> list[str]:
    """The torch parameter names (not buffers) of our variables, in torch's order."""
    names = torch_layout.flax_to_torchvision({**variables}, return_numpy=True)
    return [name for name in names if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))]


@dataclasses.dataclass
class OurSide:
    """Everything before the torch side runs: the inputs, the weights and our trained run."""

    args: Any
    config: Any
    torch_net: Any
    variables: dict
    variant: str
    weights_text: str
    inputs_text: str
    images: np.ndarray  # (steps, B, S, S, 3) in the compared dtype
    labels: np.ndarray  # (steps, B)
    held_back: np.ndarray  # (B, S, S, 3)
    steps_per_epoch: float
    ours: train_ours.OurRun
    our_logits: np.ndarray  # our trained model on held_back, eval mode


def run(args, edit_recipe: Callable[[TorchRecipe], TorchRecipe] | None = None) -> TrainParityReport:
    """The report the command prints (raises UsageError for a bad config, weights or images)."""
    return compare(train_our_side(args), edit_recipe)


def train_our_side(args) -> OurSide:
    """The config, weights and batches of `args`, and our run on them."""
    config = _config(args)
    torch_net, variables, variant, weights_text = _models(args, config)
    smallest = architecture.min_input_size(variant)
    if args.image_size < smallest:
        raise UsageError(f"--image_size {args.image_size} is too small for the {variant} GoogLeNet "
                         f"(at least {smallest})")
    num_classes = int(variables["params"]["fc"]["kernel"].shape[-1])
    config = train_ours.parity_config(config, batch_size=args.batch_size, image_size=args.image_size,
                                      num_classes=num_classes, dtype=args.dtype)
    images, labels, inputs_text = _batches(args, config, num_classes)
    images = images.astype(args.dtype)  # what both sides are fed, and --save_run keeps
    steps_per_epoch = args.steps_per_epoch or args.train_steps
    with flax_side.precision(args.dtype):
        ours = train_ours.train(config, variables, images[:-1], labels[:-1], steps_per_epoch=steps_per_epoch)
        our_logits = ours.eval_logits(images[-1])
    return OurSide(args=args, config=config, torch_net=torch_net, variables=variables, variant=variant,
                   weights_text=weights_text, inputs_text=inputs_text, images=images[:-1], labels=labels[:-1],
                   held_back=images[-1], steps_per_epoch=steps_per_epoch, ours=ours, our_logits=our_logits)


def compare(side: OurSide, edit_recipe: Callable[[TorchRecipe], TorchRecipe] | None = None) -> TrainParityReport:
    """Trains torch on `side`'s weights and batches with the config's recipe (passed through
    `edit_recipe` when given: a deliberate difference), and the baseline; the report."""
    import torch

    args, config, ours = side.args, side.config, side.ours
    names = _names(side.variables)
    recipe = torch_recipe(config, ours.learning_rates, names[config.optimizer.weight_decay_params],
                          names["kernels"])
    if edit_recipe is not None:
        recipe = edit_recipe(recipe)
    theirs = train_torch.train(side.torch_net, recipe, side.images, side.labels, dtype=args.dtype)
    baseline = train_torch.train(side.torch_net, recipe, side.images, side.labels, dtype=args.dtype,
                                 lr_scale=1.0 + BASELINE_PERTURBATION[args.dtype])
    held_back = train_torch.torch_side.to_nchw(side.held_back, args.dtype)
    with torch.no_grad():
        their_logits, baseline_logits = (run.net.eval()(held_back).numpy() for run in (theirs, baseline))
    if args.tolerance is None:
        tolerances, factor = TRAIN_TOLERANCES[args.dtype], BASELINE_FACTOR[args.dtype]
    else:
        tolerances, factor = dict.fromkeys(TRAIN_TOLERANCES[args.dtype], args.tolerance), 0.0
    report = _report(ours, theirs, baseline, (side.our_logits, their_logits, baseline_logits), side.variables,
                     tolerances, factor, BASELINE_PERTURBATION[args.dtype])
    report.settings.update(
        variant=side.variant, config=args.config or DEFAULT_CONFIG, overrides=list(args.overrides),
        dtype=args.dtype, train_steps=args.train_steps, batch_size=args.batch_size, image_size=args.image_size,
        steps_per_epoch=side.steps_per_epoch, weights=side.weights_text, inputs=side.inputs_text,
        reference=("torchvision.models.googlenet" if side.variant == "torchvision"
                   else "BVLC Caffe's topology in torch.nn (googlenet_jax/parity/caffe_torch.py)"),
        recipe=_recipe_text(recipe, len(parameter_names(side.variables))),
        baseline_perturbation=BASELINE_PERTURBATION[args.dtype], tolerances=tolerances, baseline_factor=factor)
    report.replay = dict(variables=side.variables, images=side.images, labels=side.labels, recipe=recipe,
                         ours=ours, config=config)
    return report


def _report(ours, theirs, baseline, logits, init_variables, tolerances, factor: float,
            perturbation: float) -> TrainParityReport:
    """The rows; each row's tolerance is max(tolerances[kind], factor x the baseline's drift there)."""
    rows = []

    def row(kind, name, a, b, drift, note=""):
        return compare_arrays(kind, name, a, b, max(tolerances[kind], factor * drift), note=note)

    drift_so_far = 0.0  # per step: the largest baseline drift up to that step (it fluctuates)
    for step, (lr, a, b, c) in enumerate(zip(ours.learning_rates, ours.losses, theirs.losses, baseline.losses), 1):
        drift_so_far = max(drift_so_far, rel_error(c, b))
        rows.append(row("step loss", f"step {step}", a, b, drift_so_far,
                        note=f"ours {a:.10g}, torch {b:.10g}, lr {lr:.6g}; baseline {rel_error(c, b):.1e}"))
    our_final = torch_layout.flax_to_torchvision(ours.variables, return_numpy=True)
    params = parameter_names(init_variables)
    # After the first update only the recipes act (same weights, same batches, same gradients up
    # to rounding): a tensor over tolerance here is one the two optimizers treat differently.
    if ours.first_update and theirs.first_update:
        (our_step, our_params), (their_step, their_params) = ours.first_update, theirs.first_update
        our_first = _as_torch_names(our_params, ours.variables)
        base_first = baseline.first_update[1] if baseline.first_update else their_params
        note = "" if our_step == their_step else f"ours after step {our_step}, torch after step {their_step}"
        rows += [row("parameter after the first update", name, our_first[name], their_params[name],
                     rel_error(base_first[name], their_params[name]), note) for name in params]
    rows += [row("parameter", name, our_final[name], theirs.state_dict[name],
                 rel_error(baseline.state_dict[name], theirs.state_dict[name])) for name in params]
    if ours.momentum is not None or theirs.momentum:
        our_momentum = _as_torch_names(ours.momentum, ours.variables) if ours.momentum is not None else {}
        missing = np.zeros(0)
        rows += [row("momentum buffer", name, our_momentum.get(name, missing), theirs.momentum.get(name, missing),
                     rel_error(baseline.momentum.get(name, missing), theirs.momentum.get(name, missing)))
                 for name in params]
    rows += [row("running statistic", name, our_final[name], theirs.state_dict[name],
                 rel_error(baseline.state_dict[name], theirs.state_dict[name]))
             for name in our_final if name.endswith(("running_mean", "running_var"))]
    if ours.ema or theirs.ema:
        our_ema = _as_torch_names(ours.ema, ours.variables)
        rows += [row("Polyak average", name, our_ema[name], theirs.ema[name],
                     rel_error(baseline.ema[name], theirs.ema[name])) for name in params]
    our_logits, their_logits, baseline_logits = logits
    rows.append(row("eval logits", "held-back batch", our_logits, their_logits,
                    rel_error(baseline_logits, their_logits)))
    statistics = [n for n in theirs.state_dict if n.endswith(("running_mean", "running_var"))]
    def worst(a, b, names):
        return max((rel_error(a[n], b[n]) for n in names if n in a and n in b), default=0.0)

    notes = [
        "relative error = ||ours - torch|| / ||torch||; per step: the training loss before the step's "
        f"update; baseline: the same torch run with every learning rate x (1 + "
        f"{perturbation:g}) against the torch run, the drift of two correct trainers",
        f"baseline after the last step (worst tensor): parameters "
        f"{worst(baseline.state_dict, theirs.state_dict, params):.1e}, momentum buffers "
        f"{worst(baseline.momentum, theirs.momentum, params):.1e}, running statistics "
        f"{worst(baseline.state_dict, theirs.state_dict, statistics):.1e}",
        "dropout off on both sides; the eval logits are each trained model in eval mode (running "
        "statistics) on a held-back batch",
    ]
    if factor:
        notes.append(f"each row's tolerance: the larger of its kind's floor and {factor:g} x the baseline's drift "
                     "there (up to that step, for losses): float32 rounding differs in every operation, and "
                     "two torch runs part by percents within a few steps, so only a gross error fails; "
                     "--dtype float64 gives the exact verdict")
    steps = {"learning_rates": ours.learning_rates, "jax_losses": ours.losses, "torch_losses": theirs.losses,
             "baseline_losses": baseline.losses}
    return TrainParityReport(rows, notes, {}, steps=steps)


def _as_torch_names(tree, variables) -> dict[str, np.ndarray]:
    """A params-shaped tree (momentum, EMA) in torch's names and layouts."""
    return torch_layout.flax_to_torchvision({**variables, "params": tree}, return_numpy=True)


def _recipe_text(recipe: TorchRecipe, num_params: int) -> str:
    parts = [f"{recipe.optimizer} momentum {recipe.momentum:g}" + (" (Nesterov)" if recipe.nesterov else ""),
             f"weight decay {recipe.weight_decay:g} on {len(recipe.decayed)} of {num_params} parameter tensors",
             f"label smoothing {recipe.label_smoothing:g}", f"aux weight {recipe.aux_weight:g}",
             f"BatchNorm running variance {recipe.bn_running_var}"]
    if recipe.optimizer == "lars":
        parts.append(f"trust coefficient {recipe.trust_coefficient:g}")
    if recipe.grad_clip_norm:
        parts.append(f"gradient clipping at global norm {recipe.grad_clip_norm:g}")
    parts.append(f"Polyak average {recipe.ema_decay:g}" if recipe.ema_decay else "no Polyak average")
    return ", ".join(parts)
