"""What the commands (predict, evaluate, export) share on their command lines."""
from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence

from googlenet_jax import weights as weights_lib

EPILOG = f"PATH: {weights_lib.SOURCES_HELP}."


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """--weights PATH, --transform_input on|off and --raw_params, read by `load_weights`."""
    parser.epilog = EPILOG
    parser.add_argument("--weights", required=True, metavar="PATH", help="the model's weights")
    parser.add_argument("--transform_input", choices=("on", "off"),
                        help="override the weights' transform_input (on for a torchvision .pth)")
    parser.add_argument("--raw_params", action="store_true",
                        help="for a workdir that kept a Polyak average, use the raw parameters instead")


def load_weights(args: argparse.Namespace, **kwargs) -> weights_lib.LoadedModel:
    """googlenet_jax.load with the options of add_weights_arguments (raises WeightsError)."""
    transform_input = None if args.transform_input is None else args.transform_input == "on"
    return weights_lib.load(args.weights, transform_input=transform_input, use_average=not args.raw_params,
                            **kwargs)


def comma_separated(choices: Sequence, cast: Callable = str, what: str = "values") -> Callable[[str], list]:
    """An argparse type: "a,b" -> [cast("a"), cast("b")], each among `choices`, duplicates dropped."""
    def parse(text: str) -> list:
        try:
            values = [cast(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            values = []
        if not values or any(v not in choices for v in values):
            raise argparse.ArgumentTypeError(
                f"{what} must be among {','.join(map(str, choices))}, got {text!r}")
        return list(dict.fromkeys(values))
    return parse


def check_output_folder(parser: argparse.ArgumentParser, flag: str, path: str | None) -> None:
    """A one-line usage error when an output path's folder does not exist (before any work)."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        parser.error(f"{flag} {path}: its folder does not exist")
