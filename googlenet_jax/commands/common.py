"""What the commands share: the parser, --weights, configs, one-line errors, exit codes.

Every command ends a bad argument or file with one line, `COMMAND: error: MESSAGE`, on stderr
and these exit statuses: 0 done, 1 the check failed (parity over tolerance, a step that does
not fit the TPU in aot), 2 bad arguments or files (a weights path, an image, a dataset).
Commands parse their arguments before they import TensorFlow or torch (most of them before
JAX), so `--help` and argument errors answer quickly; this module imports only the standard
library and errors.py. (`train` parses absl flags, as train.py always has: its errors exit 1.)
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from googlenet_jax.errors import first_line

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
WEIGHTS_EPILOG = ("PATH: a torchvision googlenet .pth, BVLC's bvlc_googlenet.caffemodel, a training workdir "
                  "(or its checkpoints/<step> folder), or an orbax checkpoint from "
                  "`python -m googlenet_jax.convert to-flax`.")


class UsageError(ValueError):
    """A bad argument or file found after parsing; the command prints it as one line, exit 2."""


# TensorFlow's import loads Keras's optimizers (tensorflow/__init__.py, for SavedModel
# registries), which load all of Keras and scikit-learn: 1.6 s of every command's start-up on 2
# cores (docs/performance.md, "Start-up"). Nothing here uses Keras; marked absent, that import
# fails and TensorFlow goes on without it (it catches the ImportError).
_KERAS_LOADED_BY_TENSORFLOW = "keras.src.optimizers"


def prepare_tensorflow() -> None:
    """In a command's own process, before anything imports TensorFlow: silences its C++ start-up
    logs and keeps Keras out of its import (Keras cannot be imported in that process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault(_KERAS_LOADED_BY_TENSORFLOW, None)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one `COMMAND: error: ...` line (exit 2), not a usage block."""

    def __init__(self, command: str = "", doc: str = "", **kwargs):
        if command:
            kwargs.setdefault("description", doc.split("\n\n")[0])
            kwargs["prog"] = f"python -m googlenet_jax.{command}"
        else:  # a subcommand's parser, which argparse builds with its parent's prog
            command = next(word for word in kwargs["prog"].split() if word.startswith("googlenet_jax."))
            command = command.removeprefix("googlenet_jax.")
        self.command = command
        super().__init__(**kwargs)

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.command}: error: {message}\n")

    def check_output_folder(self, flag: str, path: str | None) -> None:
        """A one-line error when an output path's folder (a gs:// URL's bucket) does not exist,
        before any work."""
        if path and path.startswith("gs://"):
            from googlenet_jax.weights import paths  # etils and, for the check, TensorFlow

            try:
                paths.check_bucket(path)
            except OSError as error:
                self.error(f"{flag} {path}: {error}")
        elif path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            self.error(f"{flag} {path}: its folder does not exist")

    def check_positive(self, flag: str, value: int | None) -> None:
        if value is not None and value < 1:
            self.error(f"{flag} must be at least 1, got {value}")


def add_weights_arguments(parser: argparse.ArgumentParser, *, required: bool = True, several: bool = False) -> None:
    """--weights PATH (repeated when `several`: a list), --transform_input on|off and
    --raw_params, read by `load_weights`."""
    parser.epilog = WEIGHTS_EPILOG
    parser.add_argument("--weights", required=required, metavar="PATH", action="append" if several else "store",
                        help="the model's weights" + ("; repeat it for an ensemble" if several else ""))
    parser.add_argument("--transform_input", choices=("on", "off"),
                        help="override the weights' transform_input (on for a torchvision .pth)")
    parser.add_argument("--raw_params", action="store_true",
                        help="for a workdir that kept a Polyak average, use the raw parameters instead")


def transform_input_flag(args: argparse.Namespace) -> bool | None:
    """--transform_input as None (the weights' own), True or False."""
    return None if args.transform_input is None else args.transform_input == "on"


def load_weights(args: argparse.Namespace, path: str | None = None, **kwargs):
    """googlenet_jax.load of `path` (default: --weights) with the options of
    add_weights_arguments (raises WeightsError)."""
    from googlenet_jax import weights  # after parsing: keeps --help instant

    return weights.load(path or args.weights, transform_input=transform_input_flag(args),
                        use_average=not args.raw_params, **kwargs)


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


def load_config(path: str, overrides: Sequence[str], command: str):
    """The training config file at `path` with its --config.FIELD=VALUE overrides, parsed as
    train.py parses them (ml_collections' config_flags); UsageError for a bad file or override."""
    from absl import flags
    from ml_collections import config_flags

    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    argv = [command, f"--config={path}", *overrides]
    values = flags.FlagValues()  # not absl's global flags: main() may run more than once
    try:
        holder = config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv)
        values(argv)
        config = holder.value
        config.keys()  # a config file that failed to load raises on first use
    except Exception as e:  # noqa: BLE001  (absl and ml_collections raise many types)
        raise UsageError(f"--config: {first_line(e)}") from None
    return config


def config_overrides(parser: argparse.ArgumentParser, rest: Sequence[str]) -> list[str]:
    """The --config.FIELD=VALUE arguments of parse_known_args' leftovers; anything else is an error."""
    unknown = [arg for arg in rest if not arg.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return list(rest)


def run(command: str, body: Callable[[], int]) -> int:
    """body()'s exit status; a bad argument or file it raises (UsageError, WeightsError and
    other ValueErrors, OSError, ImportError) becomes one `COMMAND: error: ...` line and 2."""
    try:
        return body()
    except (ValueError, OSError, ImportError) as error:
        print(f"{command}: error: {first_line(error)}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT

