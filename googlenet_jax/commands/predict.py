"""Top-k classes of images: `python -m googlenet_jax.predict --weights PATH [--top_k 5] IMAGE...`.

Prints, per image in argument order, its top-k (rank, probability, index, name). `--json OUT`
writes the same as a list, one entry per image: `{"image", "top_k": [{"index", "name",
"probability"}, ...]}`, or `{"image", "error"}` for an image that could not be read.
`--features OUT.npy` also writes one stage's features per image (`--features_stage`, default
the 1024-d pooled features; NaN rows for unreadable images). An unreadable image is named on
stderr, the others are still predicted, and the exit status is 2 at the end. Runs on
whatever JAX device is present.
"""
from __future__ import annotations

import json
import sys

from googlenet_jax.commands import common


def parse_args(argv=None):
    parser = common.ArgumentParser("predict", __doc__)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    common.add_weights_arguments(parser)
    parser.add_argument("--top_k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--features", metavar="OUT.npy",
                        help="also write each image's features (--features_stage) as a .npy file")
    parser.add_argument("--features_stage", default="avgpool", metavar="STAGE",
                        help="the stage --features writes: avgpool (default: the (N, 1024) pooled features) "
                             "or a backbone stage such as inception4e ((N, H, W, C))")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="images per batch, over all devices (default 32)")
    args = parser.parse_args(argv)
    parser.check_positive("--top_k", args.top_k)
    parser.check_positive("--batch_size", args.batch_size)
    parser.check_output_folder("--json", args.json)
    parser.check_output_folder("--features", args.features)
    return args


def format_predictions(image: str, predictions) -> str:
    lines = [image]
    for rank, p in enumerate(predictions, start=1):
        lines.append(f"  {rank:>2}  {p.probability:.4f}  {p.index:>5}  {p.name}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    common.prepare_tensorflow()

    def body() -> int:
        import numpy as np  # after parsing: keeps --help instant

        from googlenet_jax import inference

        classifier = inference.Classifier(common.load_weights(args), batch_size=args.batch_size)
        stage = args.features_stage if args.features else None
        results, features, failed = [], [], 0
        for result in inference.classify_files(classifier, args.images, top_k=args.top_k, features_stage=stage):
            if result.error is None:
                print(format_predictions(result.image, result.top_k), flush=True)
                results.append({"image": result.image, "top_k": [p._asdict() for p in result.top_k]})
            else:
                failed += 1
                print(f"predict: error: {result.error}", file=sys.stderr, flush=True)
                results.append({"image": result.image, "error": str(result.error)})
            features.append(result.features)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        if args.features:
            shape = next((f.shape for f in features if f is not None), None)
            rows = [f if f is not None else np.full(shape or (0,), np.nan, np.float32) for f in features]
            np.save(args.features, np.stack(rows))
        if failed:
            print(f"predict: error: {failed} of {len(args.images)} image(s) could not be read", file=sys.stderr)
            return common.EXIT_BAD_INPUT
        return common.EXIT_OK

    return common.run("predict", body)


if __name__ == "__main__":
    sys.exit(main())
