"""The paper's Table 1 computed from our model: `python -m googlenet_jax.summary [--variant V]
[--image_size S] [--num_classes N] [--inception_block naive] [--MODEL_FIELD VALUE ...] [--json OUT]`.

Per layer: type, patch size/stride, output size, depth, the six channel columns, parameters and
multiply-adds (convolutions and linear layers only; not BatchNorm, LRN, ReLU or pools), beside
the paper's printed figures at 224x224 with 1000 classes, then the totals. `--json OUT` writes
{"layers": [...], "params", "params_with_aux", "macs", ...} (googlenet_jax/model/table1.py).

Every field of a config's `model` section (googlenet_jax/configs/default.py) is a flag here, so
the table follows any network a config builds; `--inception_block naive` prints the paper's
Figure 2a module with the reduced module's figures beside it.
"""
from __future__ import annotations

import json
import sys

from googlenet_jax.commands import common
from googlenet_jax.model import architecture


def parse_args(argv=None):
    parser = common.ArgumentParser("summary", __doc__, description=" ".join(__doc__.split("\n\n")[:2]))
    parser.add_argument("--variant", default="torchvision", choices=sorted(architecture.VARIANTS),
                        help="model variant (default: torchvision)")
    parser.add_argument("--image_size", type=int, default=224, help="square input side (default: 224)")
    parser.add_argument("--num_classes", type=int, default=1000, help="classifier outputs (default: 1000)")
    parser.add_argument("--json", metavar="OUT",
                        help='also write {"layers": [...], "params", "params_with_aux", "macs", ...} to OUT')
    model_fields = _add_model_fields(parser)
    args = parser.parse_args(argv)
    parser.check_output_folder("--json", args.json)
    args.model_fields = {name: getattr(args, name) for name in model_fields if getattr(args, name) is not None}
    return args


# Fields of config.model that do not change Table 1 or have a flag of their own.
NOT_MODEL_FLAGS = ("variant", "dtype")


def _add_model_fields(parser) -> list[str]:
    """--FIELD for every field of config.model (typed as its default); returns their names."""
    from googlenet_jax.configs import default

    names = []
    for name, value in default.get_config().model.items():
        if name in NOT_MODEL_FLAGS:
            continue
        kind = {bool: _on_off, str: str, int: int}.get(type(value), float)
        choices = sorted(architecture.INCEPTION_BLOCKS) if name == "inception_block" else None
        parser.add_argument(f"--{name}", type=kind, choices=choices,
                            help=f"config.model.{name} (default: {value!r})")
        names.append(name)
    return names


def _on_off(text: str) -> bool:
    if text.lower() not in ("true", "false", "on", "off"):
        raise ValueError(text)
    return text.lower() in ("true", "on")


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from googlenet_jax.model import table1

        summary = table1.summarize(args.variant, args.image_size, args.num_classes, **args.model_fields)
        if args.json:
            with open(args.json, "w") as file:
                json.dump(summary, file, indent=2)
        print(table1.format_table(summary))
        return common.EXIT_OK

    return common.run("summary", body)


if __name__ == "__main__":
    sys.exit(main())
