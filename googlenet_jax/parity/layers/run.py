"""What `python -m googlenet_jax.parity` runs without --train_steps: both models from a .pth (or
random weights), the inputs, and `compare` on them.

    report = run(args)   # a ParityReport; layers/report.py prints it

Import it before anything imports TensorFlow: torchvision crashes when it is imported after
TensorFlow in one process.
"""
from __future__ import annotations

import numpy as np

from googlenet_jax.commands.common import UsageError, transform_input_flag
from googlenet_jax.model import input_spec
from googlenet_jax.parity import models
from googlenet_jax.parity.layers.compare import compare
from googlenet_jax.parity.layers.report import ParityReport


def load_inputs(args, variant: str) -> tuple[np.ndarray, str]:
    """(float32 (N, S, S, 3) inputs, a description): the eval preprocessing of --images, or
    --random N standard normal images."""
    size = args.image_size
    if not args.images:
        count = args.random or 2
        images = np.random.default_rng(args.seed).standard_normal((count, size, size, 3)).astype(np.float32)
        return images, f"{count} random normal image(s), {size}x{size}"
    from googlenet_jax import inference, weights  # TensorFlow: after torchvision (see above)

    info = weights.ModelInfo(variant=variant, num_classes=0, class_names=(), image_size=size,
                             resize_size=input_spec.eval_resize_size(size), normalization=variant)
    try:
        images = inference.preprocess_images(args.images, info)
    except inference.ImageError as error:
        raise UsageError(str(error)) from None
    return images, (f"{len(images)} image(s), shorter side resized to {info.resize_size}, center "
                    f"{size}x{size} crop, {variant} normalisation")


def run(args) -> ParityReport:
    """The report the command prints (raises UsageError for bad weights, images or sizes)."""
    pair = models.load(args.weights, variant=args.variant, transform_input=transform_input_flag(args),
                       seed=args.seed)
    models.check_image_size(pair.variant, args.image_size)
    inputs, inputs_text = load_inputs(args, pair.variant)
    try:
        report = compare(pair.ours, pair.variables, pair.torch_net, inputs, train=args.train, grads=args.grads,
                         dtype=args.dtype, tolerance=args.tolerance)
    except (ValueError, RuntimeError) as error:  # e.g. the paper variant's aux heads at a small size
        raise UsageError(str(error).strip().splitlines()[0]) from None
    report.settings.update(variant=pair.variant, reference=models.reference_text(pair.variant),
                           weights=pair.described, inputs=inputs_text, transform_input=pair.ours.transform_input)
    return report
