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

    python -m googlenet_jax.parity --train_steps N [--config CONFIG] [--config.FIELD=VALUE ...]
        [--batch_size B] [--image_size S] [--dtype float64] [--weights MODEL.pth]
        [--images FILE...] [--save_run FILE.npz] [--plot FILE.png] [--json OUT]

--train_steps N runs the same training in both: train.py's own step, optimizer and
learning-rate schedule built from CONFIG (default configs/imagenet_torchvision.py), and
torchvision's googlenet (or the Caffe port) trained by a plain torch loop with the same
recipe, from the same weights on the same N batches (random normal images with random labels,
or --images through the train-time preprocessing). It prints each step's loss on both sides,
then compares every parameter, momentum buffer, BatchNorm running statistic (and the Polyak
average) after the last step, and the eval-mode logits on a held-back batch, beside the drift
of two correct torch runs whose learning rates differ in their last bits.
"""
from __future__ import annotations

import json
import os
import sys

from googlenet_jax import cli
from googlenet_jax.model import architecture
from googlenet_jax.parity import train_args
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
    train_args.add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    args.overrides = cli.config_overrides(parser, rest)
    parser.check_positive("--random", args.random)
    parser.check_positive("--image_size", args.image_size)
    train_args.check(parser, args)
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
    cli.prepare_tensorflow()

    def body() -> int:
        try:  # torch and torchvision first: before anything imports TensorFlow
            from googlenet_jax.parity import tool
        except ImportError as error:
            raise cli.UsageError(f"comparing with PyTorch needs torch and torchvision ({error}): "
                                 f"{TORCH_INSTALL}") from None
        if args.train_steps:
            return _train_parity(args)
        report = tool.run(args)
        return _print_report(report, tool.header(report), args.json)

    return cli.run("parity", body)


def _print_report(report, header: str, json_path: str | None) -> int:
    """Prints the header and table, writes the JSON; the exit status of the verdict."""
    print(header)
    print()
    print(report.table())
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report.to_json(), f, indent=2)
    return cli.EXIT_OK if report.ok else cli.EXIT_CHECK_FAILED


def _train_parity(args) -> int:
    from googlenet_jax.parity import train_report, train_tool

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise cli.UsageError("--plot needs matplotlib: pip install matplotlib") from None
    report = train_tool.run(args)
    if args.save_run:
        train_report.save_run(report, args.save_run)
    if args.plot:
        train_report.plot(report, args.plot)
    return _print_report(report, train_report.header(report), args.json)


if __name__ == "__main__":
    sys.exit(main())
