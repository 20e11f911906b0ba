"""Weights between a torchvision .pth and an orbax checkpoint, both ways.

    python -m googlenet_jax.convert to-flax MODEL.pth CHECKPOINT_DIR [--variant paper]
        (also writes CHECKPOINT_DIR/model_info.json: class names, input size, normalisation)
    python -m googlenet_jax.convert to-flax bvlc_googlenet.caffemodel CHECKPOINT_DIR
        (BVLC Caffe's weights: the paper variant)
    python -m googlenet_jax.convert to-torch CHECKPOINT_DIR MODEL.pth

Each path may be local or a gs:// URL.

From Python (googlenet_jax/weights/torch_layout.py, also importable from googlenet_jax.convert;
torch is needed for .pth files only):

    torchvision_to_flax(state_dict, *, variant="torchvision") -> {"params"[, "batch_stats"]}
    flax_to_torchvision(variables) -> state_dict for torchvision's googlenet(...) (strict)

Both variants use torchvision's key layout (the paper variant: biased convs, no BatchNorm).
"""
from __future__ import annotations

import sys

from googlenet_jax.commands import common
from googlenet_jax.model import architecture


def parse_args(argv=None):
    parser = common.ArgumentParser("convert", __doc__)
    commands = parser.add_subparsers(dest="direction", required=True)
    to_flax = commands.add_parser("to-flax", help="torchvision .pth or BVLC .caffemodel -> orbax checkpoint directory")
    to_flax.add_argument("pth", help="torchvision googlenet state_dict (.pth), or BVLC's bvlc_googlenet.caffemodel")
    to_flax.add_argument("checkpoint", help="output orbax checkpoint directory (must not exist)")
    to_flax.add_argument("--variant", default="torchvision", choices=sorted(architecture.VARIANTS))
    to_torch = commands.add_parser("to-torch", help="orbax checkpoint directory -> torchvision .pth")
    to_torch.add_argument("checkpoint", help="orbax checkpoint directory written by to-flax")
    to_torch.add_argument("pth", help="output .pth file (must not exist)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from googlenet_jax.weights import conversion  # after parsing: keeps --help instant

        if args.direction == "to-flax":
            conversion.pth_to_checkpoint(args.pth, args.checkpoint, args.variant)
            print(f"wrote {args.checkpoint}")
        else:
            conversion.checkpoint_to_pth(args.checkpoint, args.pth)
            print(f"wrote {args.pth}")
        return common.EXIT_OK

    return common.run("convert", body)


if __name__ == "__main__":
    sys.exit(main())
