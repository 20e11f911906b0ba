"""Throughput of the jitted Classifier, beside torchvision's eval transform and model in the same run.

    python benchmarks/classifier.py [--weights PATH] [--batches 1,32,256] [--repeats 3]
                                    [--threads 4] [--json OUT.json]

Two measurements per batch size, on whatever JAX device is present:
- model only: a preprocessed float32 (B, 224, 224, 3) batch -> probabilities
  (`Classifier.predict`: padding, sharding, transfer and the jitted forward pass);
- end to end: B JPEG files (500x375, written once into a temporary folder) -> top-5 per image
  (`Classifier.__call__`: read, decode, resize 256, crop 224, normalise on `--threads`
  threads, then the model).
The peer is torchvision's googlenet (eval, channels_last) with `IMAGENET1K_V1.transforms()`
on PIL images read on the same number of threads. On the CPU, our ONNX export run by
onnxruntime is measured the same two ways (end to end: our preprocessing, then onnxruntime).
Compilation is excluded (one warm-up call per batch size); each figure is the median of
`--repeats` timed calls, with min and max.
Report ratios (ours / torch): this machine may be shared, so only numbers of one run compare.
"""
import argparse
import concurrent.futures
import functools
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
from googlenet_jax.commands.common import prepare_tensorflow  # noqa: E402

prepare_tensorflow()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from googlenet_jax import weights as weights_lib  # noqa: E402
from googlenet_jax.inference import Classifier, serving  # noqa: E402
from googlenet_jax.inference import images as images_lib  # noqa: E402
from googlenet_jax.model import GoogLeNet  # noqa: E402


def random_weights() -> weights_lib.LoadedModel:
    """ImageNet-shaped torchvision-variant weights from the model's own initialisation."""
    info = weights_lib.pretrained_info("torchvision", 1000, aux_logits=False)
    model = GoogLeNet(num_classes=1000, aux_logits=False, transform_input=True)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False)
    return weights_lib.LoadedModel(model, jax.tree.map(np.asarray, dict(variables)), info)


def write_photos(folder: str, count: int) -> list[str]:
    """`count` 500x375 JPEGs of smooth random colour (natural-image-like file sizes)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        noisy = np.clip(np.asarray(image, np.int16) + rng.integers(-12, 13, (375, 500, 3)), 0, 255)
        path = os.path.join(folder, f"{i:04d}.jpg")
        Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def timed(fn, repeats: int) -> dict:
    """Median, min and max seconds of `repeats` calls after one untimed warm-up call."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds)}


def torch_peer(threads: int):
    """(model-only fn, end-to-end fn) of torchvision's googlenet and transform, or None."""
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    from torchvision.models import GoogLeNet_Weights
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
                                       transform_input=True).eval().to(memory_format=torch.channels_last)
    transform = GoogLeNet_Weights.IMAGENET1K_V1.transforms()

    def model_only(batch: np.ndarray):
        x = torch.from_numpy(batch.transpose(0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return torch.softmax(net(x), -1).numpy()

    def end_to_end(paths):
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            tensors = list(pool.map(lambda p: transform(Image.open(p).convert("RGB")), paths))
        x = torch.stack(tensors).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return torch.topk(torch.softmax(net(x), -1), 5)

    return model_only, end_to_end


def onnxruntime_peer(loaded: weights_lib.LoadedModel, threads: int):
    """(model-only fn, end-to-end fn) of our ONNX export in onnxruntime (intra-op threads = the
    cores), end to end after our own preprocessing on `threads` threads; or None."""
    try:
        import onnxruntime
    except ImportError:
        return None
    blob, _ = serving.onnx_file(loaded)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    session = onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

    def model_only(batch: np.ndarray):
        return session.run(None, {"images": batch})[0]

    def end_to_end(paths):
        return model_only(np.stack(images_lib.preprocess_each(paths, loaded.info, threads=threads)))

    return model_only, end_to_end


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="weights path (default: random ImageNet-shaped weights)")
    parser.add_argument("--batches", default="1,32,256", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="preprocessing threads (both frameworks)")
    parser.add_argument("--no_torch", action="store_true", help="skip the torchvision peer")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    loaded = weights_lib.load(args.weights) if args.weights else random_weights()
    classifier = Classifier(loaded, batch_size=max(batches))
    peer = None if args.no_torch else torch_peer(args.threads)
    onnx_peer = onnxruntime_peer(loaded, args.threads) if jax.default_backend() == "cpu" else None
    rng = np.random.default_rng(0)
    results = {"device": str(jax.devices()[0].platform), "device_count": jax.device_count(),
               "jax": jax.__version__, "threads": args.threads, "batches": {}}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(folder, max(batches))
        for batch in batches:
            images = rng.standard_normal((batch, 224, 224, 3)).astype(np.float32)
            files = paths[:batch]
            row = {"jax_model": timed(functools.partial(classifier.predict, images), args.repeats),
                   "jax_end_to_end": timed(functools.partial(classifier, files), args.repeats)}
            if peer is not None:
                row["torch_model"] = timed(functools.partial(peer[0], images), args.repeats)
                row["torch_end_to_end"] = timed(functools.partial(peer[1], files), args.repeats)
            if onnx_peer is not None:
                row["onnxruntime_model"] = timed(functools.partial(onnx_peer[0], images), args.repeats)
                row["onnxruntime_end_to_end"] = timed(functools.partial(onnx_peer[1], files), args.repeats)
            for key in list(row):
                row[key]["img_s"] = batch / row[key]["median_s"]
            if peer is not None:
                row["model_ratio"] = row["jax_model"]["img_s"] / row["torch_model"]["img_s"]
                row["end_to_end_ratio"] = row["jax_end_to_end"]["img_s"] / row["torch_end_to_end"]["img_s"]
                if onnx_peer is not None:
                    row["onnxruntime_model_ratio"] = row["onnxruntime_model"]["img_s"] / row["torch_model"]["img_s"]
                    row["onnxruntime_end_to_end_ratio"] = (row["onnxruntime_end_to_end"]["img_s"]
                                                           / row["torch_end_to_end"]["img_s"])
            results["batches"][str(batch)] = row
            line = (f"batch {batch:>4}: model only {row['jax_model']['img_s']:8.1f} img/s | "
                    f"end to end {row['jax_end_to_end']['img_s']:8.1f} img/s")
            if peer is not None:
                line += (f" || torch {row['torch_model']['img_s']:8.1f} / "
                         f"{row['torch_end_to_end']['img_s']:8.1f} | ratio x{row['model_ratio']:.2f} / "
                         f"x{row['end_to_end_ratio']:.2f}")
            if "onnxruntime_model_ratio" in row:
                line += (f" || onnxruntime {row['onnxruntime_model']['img_s']:8.1f} / "
                         f"{row['onnxruntime_end_to_end']['img_s']:8.1f} | ratio x{row['onnxruntime_model_ratio']:.2f} "
                         f"/ x{row['onnxruntime_end_to_end_ratio']:.2f}")
            print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
