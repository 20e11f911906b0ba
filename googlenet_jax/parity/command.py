"""Parity with PyTorch, stage by stage, on your own weights and images.

    python -m googlenet_jax.parity [--weights MODEL.pth] [--variant torchvision|paper]
        [--images FILE... | --random N] [--image_size S] [--dtype float32|float64]
        [--train] [--grads] [--tolerance REL] [--json OUT]

Loads the same weights into the PyTorch reference (torchvision's `googlenet`, or for the paper
variant the torch.nn port of BVLC Caffe in googlenet_jax/parity/caffe_torch.py) and into our
Flax model, runs both on the same preprocessed inputs and prints, in network order, every
stage's relative error ||ours - torch|| / ||torch|| and largest absolute error, marking the
first stage over tolerance. Without --weights both get random He-scaled weights with
randomised BatchNorm statistics.

--train compares train mode (dropout off on both sides, so they are deterministic), including
the BatchNorm running statistics after the step; --grads adds the gradient of
CE(main) + 0.3 (CE(aux1) + CE(aux2)) for every parameter, on random fixed labels.
"""
from __future__ import annotations

import json
import os
import sys

from googlenet_jax import cli
from googlenet_jax.model import architecture
from googlenet_jax.parity.report import TOLERANCES
from googlenet_jax.weights.torch_layout import TORCH_INSTALL


def parse_args(argv=None):
    parser = cli.ArgumentParser("parity", __doc__, description=" ".join(__doc__.split("\n\n")[i] for i in (0, 2)),
                                epilog="Exit status: 0 all within tolerance, 1 a divergence, 2 bad arguments "
                                       "or files.")
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
    parser.add_argument("--dtype", choices=sorted(TOLERANCES), default="float32",
                        help="compute dtype of both sides (default float32; in float64 they agree to ~1e-12)")
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
    args = parser.parse_args(argv)
    parser.check_positive("--random", args.random)
    parser.check_positive("--image_size", args.image_size)
    if args.tolerance is not None and not args.tolerance >= 0:
        parser.error(f"--tolerance must be a non-negative number, got {args.tolerance}")
    for flag, paths in (("--weights", [args.weights] if args.weights else []), ("--images", args.images or [])):
        for path in paths:
            if not os.path.isfile(path):
                parser.error(f"{flag} {path}: no such file")
    parser.check_output_folder("--json", args.json)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.quiet_tensorflow()

    def body() -> int:
        try:  # torch and torchvision first: before anything imports TensorFlow
            from googlenet_jax.parity import tool
        except ImportError as error:
            raise cli.UsageError(f"comparing with PyTorch needs torch and torchvision ({error}): "
                                 f"{TORCH_INSTALL}") from None
        report = tool.run(args)
        print(tool.header(report))
        print()
        print(report.table())
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report.to_json(), f, indent=2)
        return cli.EXIT_OK if report.ok else cli.EXIT_CHECK_FAILED

    return cli.run("parity", body)


if __name__ == "__main__":
    sys.exit(main())
