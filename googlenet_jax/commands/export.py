"""A serving file of the inference function: a `jax.export` artifact (jax alone loads it) or ONNX.

    python -m googlenet_jax.export --weights PATH --out FILE [--platforms cpu,cuda,tpu]
        [--dtype float32|bfloat16] [--logits]
    python -m googlenet_jax.export --weights PATH --out FILE.onnx --format onnx [--logits]

PATH and FILE may be local or gs:// URLs.

FILE holds `images -> probabilities` (or logits) with the weights inside and a symbolic batch
dimension: input float32 (batch, S, S, 3), NHWC, preprocessed. FILE.json beside it says how
to feed and read it (googlenet_jax/inference/serving.py; docs/inference.md). `--format onnx`
writes an ONNX file that onnxruntime runs without JAX (needs the onnx package).
"""
from __future__ import annotations

import json
import sys

from googlenet_jax.commands import common

FORMATS = ("jax", "onnx")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export targets
DEFAULT_PLATFORMS = ["cpu", "cuda", "tpu"]
DTYPES = ("float32", "bfloat16")


def parse_args(argv=None):
    parser = common.ArgumentParser("export", __doc__)
    common.add_weights_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write (FILE.json beside it)")
    parser.add_argument("--format", choices=FORMATS, default="jax",
                        help="jax (a jax.export artifact, the default) or onnx (for onnxruntime)")
    parser.add_argument("--platforms", type=common.comma_separated(PLATFORMS, what="platforms"),
                        help="jax format: comma-separated platforms the artifact runs on (default cpu,cuda,tpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="jax format: compute dtype inside the artifact (input and output stay float32)")
    parser.add_argument("--logits", action="store_true", help="return logits instead of probabilities")
    args = parser.parse_args(argv)
    if args.format == "onnx" and (args.platforms or args.dtype != "float32"):
        parser.error("--platforms and --dtype are options of --format jax; an ONNX file computes in float32")
    parser.check_output_folder("--out", args.out)
    return args


def metadata_path(out: str) -> str:
    return out + ".json"


def main(argv=None) -> int:
    args = parse_args(argv)
    common.prepare_tensorflow()

    def body() -> int:
        from googlenet_jax.inference import serving  # after parsing: keeps --help instant
        from googlenet_jax.weights import paths

        loaded = common.load_weights(args)
        if args.format == "onnx":
            blob, meta = serving.onnx_file(loaded, logits=args.logits)
        else:
            blob, meta = serving.jax_artifact(loaded, platforms=args.platforms or DEFAULT_PLATFORMS,
                                              dtype=args.dtype, logits=args.logits)
        with paths.open_file(args.out, "wb") as f:
            f.write(blob)
        with paths.open_file(metadata_path(args.out), "w") as f:
            json.dump(meta, f, indent=2)
        size = loaded.info.image_size
        where = ",".join(meta["platforms"]) if "platforms" in meta else f"opset {meta['opset']}"
        print(f"wrote {args.out} ({len(blob) / 2**20:.1f} MiB; {args.format}, {where}; "
              f"input float32 (batch, {size}, {size}, 3)) and {metadata_path(args.out)}")
        return common.EXIT_OK

    return common.run("export", body)


if __name__ == "__main__":
    sys.exit(main())
