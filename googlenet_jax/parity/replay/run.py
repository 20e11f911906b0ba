"""What `python -m googlenet_jax.parity --train_steps N` runs: the same training run in torch and in
ours, from the same weights on the same batches, and the report comparing them step by step.

    report = run(args)                       # a replay/report.py TrainParityReport
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

from googlenet_jax.commands import common
from googlenet_jax.commands.common import UsageError
from googlenet_jax.errors import first_line
from googlenet_jax.parity import models
from googlenet_jax.parity.replay import our_steps, report, torch_loop
from googlenet_jax.parity.replay.recipe import TorchRecipe, check_mappable, torch_recipe
from googlenet_jax.training import optim
from googlenet_jax.weights import torch_layout

DEFAULT_CONFIG = os.path.join("configs", "imagenet_torchvision.py")
# The baseline run's learning rates are ours times (1 + this): a change in their last bits.
BASELINE_PERTURBATION = {"float64": 1e-13, "float32": 1e-6}
IMAGES_SEED_OFFSET = 1_000  # random images come from seed + this, the labels from seed


def _config(args):
    config = common.load_config(args.config or DEFAULT_CONFIG, args.overrides, "parity")
    from googlenet_jax.training import config as config_lib

    try:
        config_lib.validate_config(config)
    except config_lib.ConfigError as error:
        raise UsageError(str(error)) from None
    check_mappable(config)
    return config


def _models(args, config) -> models.ModelPair:
    """Both models: --weights (a variant that must be config.model.variant's), else random
    He-scaled weights of the config's variant; float64 variables."""
    pair = models.load(args.weights, variant=None if args.weights else config.model.variant,
                       transform_input=config.model.transform_input, num_classes=config.num_classes,
                       seed=args.seed, dtype=np.float64)
    if args.weights and "aux1" not in pair.variables["params"]:
        raise UsageError(f"{args.weights}: no aux heads (aux1.*, aux2.*); training uses them")
    if pair.variant != config.model.variant:
        raise UsageError(f"{args.weights} holds the {pair.variant} variant but config.model.variant is "
                         f"{config.model.variant!r}")
    return pair


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
            raise UsageError(f"{path}: not a decodable image ({first_line(error)})") from None
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
        return sorted(name for name in report.parameter_names(variables) if np.all(flags[name] == 1.0))

    return {"kernels": masked(optim.kernel_mask(variables["params"])),
            **{rule: masked(optim.weight_decay_mask(variables["params"], rule))
               for rule in optim.WEIGHT_DECAY_PARAMS}}


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
    ours: our_steps.OurRun
    our_logits: np.ndarray  # our trained model on held_back, eval mode


def run(args, edit_recipe: Callable[[TorchRecipe], TorchRecipe] | None = None) -> report.TrainParityReport:
    """The report the command prints (raises UsageError for a bad config, weights or images)."""
    return compare(train_our_side(args), edit_recipe)


def train_our_side(args) -> OurSide:
    """The config, weights and batches of `args`, and our run on them."""
    config = _config(args)
    pair = _models(args, config)
    variables = pair.variables
    models.check_image_size(pair.variant, args.image_size)
    num_classes = int(variables["params"]["fc"]["kernel"].shape[-1])
    config = our_steps.parity_config(config, batch_size=args.batch_size, image_size=args.image_size,
                                     num_classes=num_classes, dtype=args.dtype)
    images, labels, inputs_text = _batches(args, config, num_classes)
    images = images.astype(args.dtype)  # what both sides are fed, and --save_run keeps
    steps_per_epoch = args.steps_per_epoch or args.train_steps
    with models.precision(args.dtype):
        ours = our_steps.train(config, variables, images[:-1], labels[:-1], steps_per_epoch=steps_per_epoch)
        our_logits = ours.eval_logits(images[-1])
    return OurSide(args=args, config=config, torch_net=pair.torch_net, variables=variables, variant=pair.variant,
                   weights_text=pair.described, inputs_text=inputs_text, images=images[:-1], labels=labels[:-1],
                   held_back=images[-1], steps_per_epoch=steps_per_epoch, ours=ours, our_logits=our_logits)


def compare(side: OurSide,
            edit_recipe: Callable[[TorchRecipe], TorchRecipe] | None = None) -> report.TrainParityReport:
    """Trains torch on `side`'s weights and batches with the config's recipe (passed through
    `edit_recipe` when given: a deliberate difference), and the baseline; the report."""
    import torch

    args, config, ours = side.args, side.config, side.ours
    names = _names(side.variables)
    recipe = torch_recipe(config, ours.learning_rates, names[config.optimizer.weight_decay_params],
                          names["kernels"])
    if edit_recipe is not None:
        recipe = edit_recipe(recipe)
    theirs = torch_loop.train(side.torch_net, recipe, side.images, side.labels, dtype=args.dtype)
    baseline = torch_loop.train(side.torch_net, recipe, side.images, side.labels, dtype=args.dtype,
                                lr_scale=1.0 + BASELINE_PERTURBATION[args.dtype])
    held_back = models.to_nchw(side.held_back, args.dtype)
    with torch.no_grad():
        their_logits, baseline_logits = (run.net.eval()(held_back).numpy() for run in (theirs, baseline))
    if args.tolerance is None:
        tolerances, factor = report.TRAIN_TOLERANCES[args.dtype], report.BASELINE_FACTOR[args.dtype]
    else:
        tolerances, factor = dict.fromkeys(report.TRAIN_TOLERANCES[args.dtype], args.tolerance), 0.0
    result = report.build(ours, theirs, baseline, (side.our_logits, their_logits, baseline_logits), side.variables,
                          tolerances, factor, BASELINE_PERTURBATION[args.dtype])
    result.settings.update(
        variant=side.variant, config=args.config or DEFAULT_CONFIG, overrides=list(args.overrides),
        dtype=args.dtype, train_steps=args.train_steps, batch_size=args.batch_size, image_size=args.image_size,
        steps_per_epoch=side.steps_per_epoch, weights=side.weights_text, inputs=side.inputs_text,
        reference=models.reference_text(side.variant),
        recipe=report.recipe_text(recipe, len(report.parameter_names(side.variables))),
        baseline_perturbation=BASELINE_PERTURBATION[args.dtype], tolerances=tolerances, baseline_factor=factor)
    result.replay = dict(variables=side.variables, images=side.images, labels=side.labels, recipe=recipe,
                         ours=ours, config=config)
    return result


