"""The paper's Table 1 computed from our model: `python -m googlenet_jax.summary [--variant V]
[--image_size S] [--num_classes N] [--json OUT]`.

Per layer: type, patch size/stride, output size, depth, the six channel columns, parameters and
multiply-adds (convolutions and linear layers only; not BatchNorm, LRN, ReLU or pools), beside
the paper's printed figures at 224x224 with 1000 classes, then the totals. `--json OUT` writes
{"layers": [...], "params", "params_with_aux", "macs", ...} (googlenet_jax/model/table1.py).
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
    args = parser.parse_args(argv)
    parser.check_output_folder("--json", args.json)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from googlenet_jax.model import table1

        summary = table1.summarize(args.variant, args.image_size, args.num_classes)
        if args.json:
            with open(args.json, "w") as file:
                json.dump(summary, file, indent=2)
        print(table1.format_table(summary))
        return common.EXIT_OK

    return common.run("summary", body)


if __name__ == "__main__":
    sys.exit(main())
