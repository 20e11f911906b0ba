"""What `python -m googlenet_jax.parity` runs: both models from a .pth (or random), the inputs, the report.

Import it before anything imports TensorFlow: torchvision crashes when it is imported after
TensorFlow in one process.
"""
from __future__ import annotations

import numpy as np

from googlenet_jax.cli import UsageError, transform_input_flag
from googlenet_jax.model import architecture, input_spec
from googlenet_jax.model.network import GoogLeNet
from googlenet_jax.parity import references
from googlenet_jax.parity.compare import compare
from googlenet_jax.parity.report import ParityReport
from googlenet_jax.weights import torch_layout


def load_models(args):
    """(our module, our variables, the torch reference, variant, a description of the weights)."""
    transform_input = transform_input_flag(args)
    if args.weights:
        try:
            state_dict = torch_layout.load_torch_state_dict(args.weights)
        except ValueError as error:
            raise UsageError(str(error)) from None
        variant = args.variant or torch_layout.detect_variant(state_dict)
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
        try:
            variables = torch_layout.torchvision_to_flax(state_dict, variant=variant)
        except ValueError as error:
            raise UsageError(f"{args.weights}: {error}") from None
        transform_input = variant == "torchvision" if transform_input is None else transform_input
        torch_net = references.from_state_dict(state_dict, variant, transform_input=transform_input)
        described = args.weights
    else:
        variant = args.variant or "torchvision"
        transform_input = variant == "torchvision" if transform_input is None else transform_input
        torch_net = references.build(variant, transform_input=transform_input, seed=args.seed)
        variables = torch_layout.torchvision_to_flax(
            {k: v.numpy() for k, v in torch_net.state_dict().items()}, variant=variant)
        described = f"random (He-scaled, randomised BatchNorm statistics, seed {args.seed})"
    if transform_input and variant != "torchvision":
        raise UsageError("--transform_input on is a torchvision option; the paper variant has none")
    params = variables["params"]
    ours = GoogLeNet(num_classes=int(params["fc"]["kernel"].shape[-1]), variant=variant,
                     aux_logits="aux1" in params, transform_input=transform_input)
    return ours, variables, torch_net, variant, described


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
    ours, variables, torch_net, variant, weights_text = load_models(args)
    smallest = architecture.min_input_size(variant)
    if args.image_size < smallest:
        raise UsageError(f"--image_size {args.image_size} is too small for the {variant} GoogLeNet "
                         f"(at least {smallest})")
    inputs, inputs_text = load_inputs(args, variant)
    try:
        report = compare(ours, variables, torch_net, inputs, train=args.train, grads=args.grads,
                         dtype=args.dtype, tolerance=args.tolerance)
    except (ValueError, RuntimeError) as error:  # e.g. the paper variant's aux heads at a small size
        raise UsageError(str(error).strip().splitlines()[0]) from None
    reference = ("torchvision.models.googlenet" if variant == "torchvision"
                 else "BVLC Caffe's topology in torch.nn (googlenet_jax/parity/caffe_torch.py)")
    report.settings.update(variant=variant, reference=reference, weights=weights_text, inputs=inputs_text,
                           transform_input=ours.transform_input)
    return report


def header(report: ParityReport) -> str:
    s = report.settings
    return "\n".join([
        f"GoogLeNet parity, {s['variant']} variant: ours (Flax) against {s['reference']}",
        f"weights: {s['weights']}",
        f"inputs: {s['inputs']}; transform_input {'on' if s['transform_input'] else 'off'}",
    ])
