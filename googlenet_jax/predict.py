"""Top-k classes of images: `python -m googlenet_jax.predict --weights PATH [--top_k 5] IMAGE...`.

Prints, per image in argument order, its top-k (rank, probability, index, name). `--json OUT`
writes the same as a list, one entry per image: `{"image", "top_k": [{"index", "name",
"probability"}, ...]}`, or `{"image", "error"}` for an image that could not be read.
`--features OUT.npy` also writes the 1024-d pooled features, one row per image (NaN rows
for unreadable images). An unreadable image is named on stderr, the others are still
predicted, and the exit status is 1 at the end. Runs on whatever JAX device is present.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's C++ start-up logs

from googlenet_jax import cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m googlenet_jax.predict",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    cli.add_weights_arguments(parser)
    parser.add_argument("--top_k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--features", metavar="OUT.npy",
                        help="also write the (N, 1024) pooled features as a .npy file")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="images per batch, over all devices (default 32)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top_k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    cli.check_output_folder(parser, "--json", args.json)
    cli.check_output_folder(parser, "--features", args.features)
    return args


def format_predictions(image: str, predictions) -> str:
    lines = [image]
    for rank, p in enumerate(predictions, start=1):
        lines.append(f"  {rank:>2}  {p.probability:.4f}  {p.index:>5}  {p.name}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    from googlenet_jax import inference
    from googlenet_jax.weights import WeightsError

    try:
        classifier = inference.Classifier(cli.load_weights(args), batch_size=args.batch_size)
    except (WeightsError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    results, features, failed = [], [], 0
    # Chunk by chunk, so that a long list of large photos never sits decoded in memory.
    for start in range(0, len(args.images), classifier.batch_size):
        chunk = args.images[start:start + classifier.batch_size]
        inputs = inference.preprocess_each(chunk, classifier.info)
        ok = [i for i, x in enumerate(inputs) if not isinstance(x, inference.ImageError)]
        size = classifier.info.image_size
        batch = np.stack([inputs[i] for i in ok]) if ok else np.zeros((0, size, size, 3), np.float32)
        top = dict(zip(ok, classifier.top_k(classifier.predict(batch), args.top_k)))
        chunk_features = np.full((len(chunk), inference.FEATURES_DIM), np.nan, np.float32)
        if args.features:
            chunk_features[ok] = classifier.features(batch)
        features.append(chunk_features)
        for i, image in enumerate(chunk):
            if i in top:
                print(format_predictions(image, top[i]), flush=True)
                results.append({"image": image, "top_k": [p._asdict() for p in top[i]]})
            else:
                failed += 1
                print(f"error: {inputs[i]}", file=sys.stderr, flush=True)
                results.append({"image": image, "error": str(inputs[i])})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.features:
        np.save(args.features, np.concatenate(features))
    if failed:
        print(f"error: {failed} of {len(args.images)} image(s) could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
