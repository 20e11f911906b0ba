"""A serving artifact: the inference function serialized with `jax.export`, loadable with jax alone.

    python -m googlenet_jax.export --weights PATH --out FILE [--platforms cpu,cuda,tpu]
        [--dtype float32|bfloat16] [--logits]

FILE holds `images -> probabilities` (or logits) with the weights inside and a symbolic batch
dimension: input float32 (batch, S, S, 3), NHWC, preprocessed. FILE.json beside it says how
to feed and read it (googlenet_jax/inference/serving.py; docs/inference.md).
"""
from __future__ import annotations

import json
import sys

from googlenet_jax import cli

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export targets
DTYPES = ("float32", "bfloat16")


def parse_args(argv=None):
    parser = cli.ArgumentParser("export", __doc__)
    cli.add_weights_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="the artifact to write (FILE.json beside it)")
    parser.add_argument("--platforms", type=cli.comma_separated(PLATFORMS, what="platforms"),
                        default=["cpu", "cuda", "tpu"],
                        help="comma-separated platforms the artifact runs on (default cpu,cuda,tpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="compute dtype inside the artifact (input and output stay float32)")
    parser.add_argument("--logits", action="store_true", help="return logits instead of probabilities")
    args = parser.parse_args(argv)
    parser.check_output_folder("--out", args.out)
    return args


def metadata_path(out: str) -> str:
    return out + ".json"


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.quiet_tensorflow()

    def body() -> int:
        from googlenet_jax.inference import serving  # after parsing: keeps --help instant

        loaded = cli.load_weights(args)
        exported = serving.export_model(loaded, platforms=args.platforms, dtype=args.dtype, logits=args.logits)
        blob = exported.serialize()
        with open(args.out, "wb") as f:
            f.write(blob)
        with open(metadata_path(args.out), "w") as f:
            json.dump(serving.describe(exported, loaded, dtype=args.dtype, logits=args.logits), f, indent=2)
        size = loaded.info.image_size
        print(f"wrote {args.out} ({len(blob) / 2**20:.1f} MiB; {','.join(exported.platforms)}; "
              f"input float32 (batch, {size}, {size}, 3)) and {metadata_path(args.out)}")
        return cli.EXIT_OK

    return cli.run("export", body)


if __name__ == "__main__":
    sys.exit(main())
