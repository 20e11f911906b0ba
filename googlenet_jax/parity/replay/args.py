"""The --train_steps options of `python -m googlenet_jax.parity` and their checks (the standard
library only: the command parses its arguments before it loads JAX or torch)."""
from __future__ import annotations

import os


def add_arguments(parser) -> None:
    training = parser.add_argument_group("training parity (--train_steps)")
    training.add_argument("--train_steps", type=int, metavar="N",
                          help="run N training steps in both frameworks and compare them step by step")
    training.add_argument("--config", metavar="CONFIG",
                          help="the training config whose recipe both sides follow (default "
                               "configs/imagenet_torchvision.py); --config.FIELD=VALUE overrides a field")
    training.add_argument("--batch_size", type=int, metavar="B",
                          help="images per step (default: --random N's N, else 8)")
    training.add_argument("--steps_per_epoch", type=float, metavar="K",
                          help="what an epoch is to the config's schedule (warmup_epochs, decay_epochs); "
                               "default N: the run is one epoch")
    training.add_argument("--save_run", metavar="FILE.npz",
                          help="the initial weights, batches, learning rates, our losses and final weights, "
                               "in torch's names, to replay in your own torch trainer")
    training.add_argument("--plot", metavar="FILE.png", help="the two loss curves and their relative difference")


def check(parser, args) -> None:
    """Errors (exit 2) for --train_steps options without it, or given with options it does not take."""
    args.dtype = args.dtype or ("float32" if args.train_steps is None else "float64")
    if args.train_steps is None:
        used = [flag for flag, value in (("--config", args.config), ("--config.FIELD", args.overrides),
                                         ("--save_run", args.save_run), ("--plot", args.plot),
                                         ("--steps_per_epoch", args.steps_per_epoch)) if value]
        if used:
            parser.error(f"{used[0]} needs --train_steps N")
        return
    parser.check_positive("--train_steps", args.train_steps)
    parser.check_positive("--batch_size", args.batch_size)
    if args.random and args.batch_size and args.random != args.batch_size:
        parser.error(f"--random {args.random} and --batch_size {args.batch_size}: with --train_steps "
                     "--random N is the batch size; give one of them")
    args.batch_size = args.batch_size or args.random or 8
    if args.steps_per_epoch is not None and not args.steps_per_epoch > 0:
        parser.error(f"--steps_per_epoch must be positive, got {args.steps_per_epoch}")
    for flag in ("--train", "--grads", "--variant", "--transform_input"):
        if getattr(args, flag[2:]):
            parser.error(f"{flag} is not a --train_steps option (training parity trains; the config sets "
                         "the variant and transform_input: --config.model.variant=..., "
                         "--config.model.transform_input=true)")
    if args.config and not os.path.isfile(args.config):
        parser.error(f"--config {args.config}: no such file")
    parser.check_output_folder("--save_run", args.save_run)
    parser.check_output_folder("--plot", args.plot)
