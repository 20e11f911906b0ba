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

import importlib
import json
import sys

from googlenet_jax.commands import common


def parse_args(argv=None):
    from googlenet_jax.parity.layers import args as layer_args  # the options of each part, and their checks
    from googlenet_jax.parity.replay import args as replay_args

    parser = common.ArgumentParser("parity", __doc__, description=" ".join(__doc__.split("\n\n")[i] for i in (0, 2)),
                                epilog="Exit status: 0 all within tolerance, 1 a divergence, 2 bad arguments "
                                       "or files.")
    layer_args.add_arguments(parser)
    replay_args.add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    args.overrides = common.config_overrides(parser, rest)
    layer_args.check(parser, args)
    replay_args.check(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    common.prepare_tensorflow()

    def body() -> int:
        from googlenet_jax.weights.torch_layout import TORCH_INSTALL

        try:  # torch and torchvision (the references' module) first: before anything imports TensorFlow
            importlib.import_module("googlenet_jax.parity.models")
        except ImportError as error:
            raise common.UsageError(f"comparing with PyTorch needs torch and torchvision ({error}): "
                                 f"{TORCH_INSTALL}") from None
        return _replay(args) if args.train_steps else _layers(args)

    return common.run("parity", body)


def _layers(args) -> int:
    from googlenet_jax.parity.layers import report, run

    result = run.run(args)
    return _print_report(result, report.header(result), args.json)


def _replay(args) -> int:
    from googlenet_jax.parity.replay import report, run

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise common.UsageError("--plot needs matplotlib: pip install matplotlib") from None
    result = run.run(args)
    if args.save_run:
        report.save_run(result, args.save_run)
    if args.plot:
        report.plot(result, args.plot)
    return _print_report(result, report.header(result), args.json)


def _print_report(report, header: str, json_path: str | None) -> int:
    """Prints the header and table, writes the JSON; the exit status of the verdict."""
    print(header)
    print()
    print(report.table())
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report.to_json(), f, indent=2)
    return common.EXIT_OK if report.ok else common.EXIT_CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
