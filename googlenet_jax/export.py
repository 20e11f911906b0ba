"""A serving artifact: the inference function serialized with `jax.export`, loadable with jax alone.

    python -m googlenet_jax.export --weights PATH --out FILE [--platforms cpu,cuda,tpu]
        [--dtype float32|bfloat16] [--logits]

FILE holds the StableHLO of `images -> probabilities` (or logits) with the weights inside
and a symbolic batch dimension: input float32 (batch, S, S, 3), NHWC, preprocessed (shorter
side to resize_size, center crop S, normalised). FILE.json beside it says how to feed and
read it: input shape, normalisation (mean and std on 0..255 pixels), class names, jax
version. Loading it needs only jax:

    from jax import export
    serve = export.deserialize(open("googlenet.jax", "rb").read())
    probabilities = serve.call(images)   # float32 (batch, S, S, 3) -> (batch, num_classes)

`jax.export` promises that an artifact loads on jax releases up to about 6 months newer
than the one that wrote it (and older ones back to its calling-convention version): keep
the weights as the archive and re-export for newer jax.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from googlenet_jax import cli  # noqa: E402

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DTYPES = ("float32", "bfloat16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m googlenet_jax.export",
                                     description=__doc__.split("\n\n")[0])
    cli.add_weights_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the artifact to write (FILE.json beside it)")
    parser.add_argument("--platforms", type=cli.comma_separated(PLATFORMS, what="platforms"),
                        default=["cpu", "cuda", "tpu"],
                        help="comma-separated platforms the artifact runs on (default cpu,cuda,tpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="compute dtype inside the artifact (input and output stay float32)")
    parser.add_argument("--logits", action="store_true", help="return logits instead of probabilities")
    args = parser.parse_args(argv)
    cli.check_output_folder(parser, "--out", args.out)
    return args


def metadata_path(out: str) -> str:
    return out + ".json"


def export_model(loaded, *, platforms, dtype: str = "float32", logits: bool = False):
    """The jax.export.Exported of `images -> probabilities | logits` for a LoadedModel.

    The aux heads are left out (inference never runs them); the weights become constants of
    the artifact. The batch dimension is symbolic ("batch").
    """
    import jax
    import jax.numpy as jnp
    from jax import export

    model = loaded.model.clone(aux_logits=False, dtype=jnp.dtype(dtype))
    variables = {collection: {k: v for k, v in tree.items() if k not in ("aux1", "aux2")}
                 for collection, tree in loaded.variables.items()}
    variables = jax.tree.map(jnp.asarray, variables)

    def serve(images):
        out = model.apply(variables, images, train=False).astype(jnp.float32)
        return out if logits else jax.nn.softmax(out, axis=-1)

    batch, = export.symbolic_shape("batch")
    size = loaded.info.image_size
    spec = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    return export.export(jax.jit(serve), platforms=platforms)(spec)


def describe(exported, loaded, *, dtype: str, logits: bool) -> dict:
    """FILE.json: everything a serving user needs to feed and read the artifact."""
    import jax
    import jaxlib
    from googlenet_jax import normalization

    info = loaded.info
    mean, std = normalization.mean_std_255(info.normalization)
    return {
        "format": "jax.export serialized Exported (jax.export.deserialize)",
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "calling_convention_version": exported.calling_convention_version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platforms": list(exported.platforms),
        "weights": info.path,
        "variant": info.variant,
        "compute_dtype": dtype,
        "input": {"shape": ["batch", info.image_size, info.image_size, 3], "dtype": "float32",
                  "layout": "NHWC, RGB"},
        "output": {"shape": ["batch", info.num_classes], "dtype": "float32",
                   "kind": "logits" if logits else "probabilities"},
        "preprocessing": {
            "resize_shorter_side": info.resize_size, "resize": "bilinear, antialiased",
            "center_crop": info.image_size,
            "normalization": info.normalization,
            "formula": "(pixel - mean) / std, pixel in 0..255",
            "mean": list(mean), "std": list(std),
        },
        "transform_input_inside": info.transform_input,
        "class_names": list(info.class_names),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        loaded = cli.load_weights(args)
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    exported = export_model(loaded, platforms=args.platforms, dtype=args.dtype, logits=args.logits)
    blob = exported.serialize()
    with open(args.out, "wb") as f:
        f.write(blob)
    with open(metadata_path(args.out), "w") as f:
        json.dump(describe(exported, loaded, dtype=args.dtype, logits=args.logits), f, indent=2)
    print(f"wrote {args.out} ({len(blob) / 2**20:.1f} MiB; {','.join(exported.platforms)}; "
          f"input float32 (batch, {loaded.info.image_size}, {loaded.info.image_size}, 3)) "
          f"and {metadata_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
