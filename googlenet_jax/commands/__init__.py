"""The commands, one thin module each (parse arguments, call the library, print):

    python -m googlenet_jax COMMAND [ARGS...]      googlenet-jax COMMAND [ARGS...]

    train     trains GoogLeNet from a config (googlenet_jax/training/trainer.py)
    predict   top-k classes of images (googlenet_jax/inference/)
    evaluate  accuracy over a split, 1, 10 or 144 crops, ensembles (googlenet_jax/evaluation.py)
    export    a jax.export artifact or an ONNX file (googlenet_jax/inference/serving.py, onnx_export.py)
    summary   the paper's Table 1 from our model (googlenet_jax/model/table1.py)
    parity    comparisons with PyTorch (googlenet_jax/parity/)
    convert   torchvision .pth <-> orbax checkpoint, BVLC .caffemodel -> orbax (googlenet_jax/weights/conversion.py)
    launch    one command as N local JAX processes (googlenet_jax/training/launcher.py)
    aot       does a config fit a TPU slice (googlenet_jax/training/tpu_compile.py, tpu_fit.py)

`python -m googlenet_jax.COMMAND` runs the same (every command but train, which the repository's
`train.py` runs). What they share (parser, --weights, configs, one-line errors, exit codes) is in
common.py. This module imports only the standard library.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from googlenet_jax.commands.common import EXIT_BAD_INPUT, EXIT_OK

COMMANDS = ("train", "predict", "evaluate", "export", "summary", "parity", "convert", "launch", "aot")
_USAGE = f"usage: googlenet-jax {{{','.join(COMMANDS)}}} [ARGS...]  (COMMAND --help for each)"


def main(argv: Sequence[str] | None = None) -> int:
    """`googlenet-jax COMMAND ARGS...` and `python -m googlenet_jax COMMAND ARGS...`: runs
    googlenet_jax.commands.COMMAND.main(ARGS); an unknown command is one line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(_USAGE, file=sys.stderr)
        return EXIT_BAD_INPUT
    if argv[0] in ("-h", "--help"):
        print(f"{_USAGE}\n\n{__doc__.split(chr(10) * 2)[2]}")
        return EXIT_OK
    if argv[0] not in COMMANDS:
        print(f"googlenet-jax: error: unknown command {argv[0]!r}\n{_USAGE}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return importlib.import_module(f"googlenet_jax.commands.{argv[0]}").main(argv[1:])
