"""Weights between a torchvision .pth and an orbax checkpoint, both ways.

    python -m googlenet_jax.convert to-flax MODEL.pth CHECKPOINT_DIR [--variant paper]
        (also writes CHECKPOINT_DIR/model_info.json: class names, input size, normalisation)
    python -m googlenet_jax.convert to-torch CHECKPOINT_DIR MODEL.pth

Each path may be local or a gs:// URL.

From Python (googlenet_jax/weights/torch_layout.py; torch is needed for .pth files only):

    torchvision_to_flax(state_dict, *, variant="torchvision") -> {"params"[, "batch_stats"]}
    flax_to_torchvision(variables) -> state_dict for torchvision's googlenet(...) (strict)

Both variants use torchvision's key layout (the paper variant: biased convs, no BatchNorm).
"""
from __future__ import annotations

import io
import sys

from googlenet_jax import cli, weights
from googlenet_jax.model import architecture
from googlenet_jax.weights import paths
from googlenet_jax.weights.files import load_variables, save_variables  # noqa: F401  (public API)
from googlenet_jax.weights.torch_layout import (
    flax_to_torchvision,  # noqa: F401  (public API)
    import_torch,
    load_torch_state_dict,
    torchvision_to_flax,  # noqa: F401  (public API)
)


def parse_args(argv=None):
    parser = cli.ArgumentParser("convert", __doc__)
    commands = parser.add_subparsers(dest="direction", required=True)
    to_flax = commands.add_parser("to-flax", help="torchvision .pth -> orbax checkpoint directory")
    to_flax.add_argument("pth", help="torchvision googlenet state_dict (.pth)")
    to_flax.add_argument("checkpoint", help="output orbax checkpoint directory (must not exist)")
    to_flax.add_argument("--variant", default="torchvision", choices=sorted(architecture.VARIANTS))
    to_torch = commands.add_parser("to-torch", help="orbax checkpoint directory -> torchvision .pth")
    to_torch.add_argument("checkpoint", help="orbax checkpoint directory written by to-flax")
    to_torch.add_argument("pth", help="output .pth file (must not exist)")
    return parser.parse_args(argv)


def to_flax(pth: str, checkpoint: str, variant: str) -> None:
    variables = torchvision_to_flax(load_torch_state_dict(pth), variant=variant)
    save_variables(checkpoint, variables)
    # Beside the arrays, what predict / evaluate / export need (class names included).
    weights.write_model_info(checkpoint, weights.pretrained_info(
        variant, int(variables["params"]["fc"]["kernel"].shape[-1]), aux_logits="aux1" in variables["params"]))


def to_torch(checkpoint: str, pth: str) -> None:
    if paths.exists(pth):
        raise ValueError(f"{pth}: already exists; refusing to overwrite it")
    state_dict = flax_to_torchvision(load_variables(checkpoint))
    if paths.is_url(pth):
        paths.check_bucket(pth)
        buffer = io.BytesIO()
        import_torch().save(state_dict, buffer)
        with paths.open_file(pth, "wb") as f:
            f.write(buffer.getvalue())
    else:
        import_torch().save(state_dict, pth)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        if args.direction == "to-flax":
            to_flax(args.pth, args.checkpoint, args.variant)
            print(f"wrote {args.checkpoint}")
        else:
            to_torch(args.checkpoint, args.pth)
            print(f"wrote {args.pth}")
        return cli.EXIT_OK

    return cli.run("convert", body)


if __name__ == "__main__":
    sys.exit(main())
