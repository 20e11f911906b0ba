"""The options of the layer-by-layer comparison and their checks. The training replay
(replay/args.py) takes the shared ones too: --weights, --images/--random, --image_size, --dtype,
--tolerance, --seed, --json. The standard library only: the command parses its arguments before
it loads JAX or torch."""
from __future__ import annotations

import os

from googlenet_jax.model import architecture
from googlenet_jax.parity.layers.report import TOLERANCES


def add_arguments(parser) -> None:
    parser.add_argument("--weights", metavar="PATH.pth",
                        help="a torchvision-layout googlenet state_dict (with or without aux heads; "
                             "default: random weights)")
    parser.add_argument("--variant", choices=sorted(architecture.VARIANTS),
                        help="default: the weights' own (BatchNorm keys: torchvision); torchvision for random weights")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--images", nargs="+", metavar="FILE",
                        help="images, preprocessed by the eval path (resize, center crop, the variant's normalisation)")
    inputs.add_argument("--random", type=int, metavar="N", help="N random normal images (default 2)")
    parser.add_argument("--image_size", type=int, default=224, metavar="S", help="square input side (default 224)")
    parser.add_argument("--dtype", choices=sorted(TOLERANCES),
                        help="compute dtype of both sides (default float32, float64 with --train_steps: "
                             "the exact verdict; in float64 a forward pass agrees to ~1e-12)")
    parser.add_argument("--train", action="store_true",
                        help="train mode (dropout off), with BatchNorm running statistics")
    parser.add_argument("--grads", action="store_true",
                        help="also the loss gradient of every parameter (implies --train)")
    parser.add_argument("--transform_input", choices=("on", "off"),
                        help="torchvision's transform_input on both sides (default: on for the "
                             "torchvision variant, as its pretrained builder sets it)")
    parser.add_argument("--tolerance", type=float, metavar="REL",
                        help="one relative tolerance for every row (default: by dtype and mode)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and images")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")


def check(parser, args) -> None:
    """Errors (exit 2) for values out of range, missing files and a --json folder that is not there."""
    parser.check_positive("--random", args.random)
    parser.check_positive("--image_size", args.image_size)
    if args.tolerance is not None and not args.tolerance >= 0:
        parser.error(f"--tolerance must be a non-negative number, got {args.tolerance}")
    for flag, paths in (("--weights", [args.weights] if args.weights else []), ("--images", args.images or [])):
        for path in paths:
            if not os.path.isfile(path):
                parser.error(f"{flag} {path}: no such file")
    parser.check_output_folder("--json", args.json)
