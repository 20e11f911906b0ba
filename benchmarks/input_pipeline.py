"""Input-pipeline throughput: decode + Inception crop + flip to 224x224, images/s per CPU core.

Writes N synthetic 500x375 JPEGs (ImageNet's typical size) to a temp dir, then times,
through the same tf.data harness:
  ours: googlenet_jax.data ops (fused decode_and_crop_jpeg, Inception crop, flip, resize);
  peer: plain tf.io.decode_jpeg of the whole image + resize of the whole image to 224x224;
  pil:  PIL decode + random crop + flip + resize (single thread, in Python).
Usage: python benchmarks/input_pipeline.py [--images 256] [--repeats 3] [--threads 1] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from googlenet_jax.data import preprocess  # noqa: E402

SIZE = 224


def write_jpegs(folder: str, count: int) -> list[str]:
    """Photo-like 500x375 JPEGs (smooth gradients plus noise, quality 90), about 60-90 KB each."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    paths = []
    for i in range(count):
        phase = rng.uniform(0, 6.28, 3)
        base = np.stack([np.sin(x / (40 + 10 * k) + y / 70 + phase[k]) for k in range(3)], -1)
        image = np.clip(127 + 100 * base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(image).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def ours(encoded, seed):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = preprocess.inception_crop(encoded, seeds[0])
    return preprocess.random_flip(preprocess.resize(image, SIZE, antialias=False), seeds[1])


def peer(encoded, seed):
    del seed
    return tf.image.resize(tf.io.decode_jpeg(encoded, channels=3), (SIZE, SIZE))


def time_tf(fn, blobs: list[bytes], threads: int, repeats: int) -> float:
    """Best images/s over `repeats` passes of a tf.data pipeline limited to `threads` threads."""
    seeds = np.stack([np.arange(len(blobs)), np.zeros(len(blobs))], 1).astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices((blobs, seeds)).cache()
    ds = ds.map(fn, num_parallel_calls=threads).batch(32)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    ds = ds.with_options(options)
    for _ in ds:  # warm up: tracing, cache fill
        pass
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in ds:
            pass
        best = max(best, len(blobs) / (time.perf_counter() - start))
    return best


def time_pil(paths: list[str], repeats: int) -> float:
    rng = np.random.default_rng(0)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                w, h = im.size
                side = int(min(w, h) * rng.uniform(0.3, 1.0))
                left, top = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
                im = im.convert("RGB").crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
                out = np.asarray(im.transpose(Image.FLIP_LEFT_RIGHT), np.float32)
        best = max(best, len(paths) / (time.perf_counter() - start))
    del out
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads tf.data may use")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images)
        blobs = [open(p, "rb").read() for p in paths]
        ours_ips = time_tf(ours, blobs, args.threads, args.repeats)
        peer_ips = time_tf(peer, blobs, args.threads, args.repeats)
        pil_ips = time_pil(paths, args.repeats)
    result = {
        "images": args.images, "image_hw": [375, 500], "output_hw": [SIZE, SIZE],
        "threads": args.threads,
        "mean_jpeg_kb": round(sum(map(len, blobs)) / len(blobs) / 1024, 1),
        "ours_images_per_sec_per_core": round(ours_ips / args.threads, 1),
        "peer_decode_resize_images_per_sec_per_core": round(peer_ips / args.threads, 1),
        "pil_images_per_sec_per_core": round(pil_ips, 1),
        "ratio_ours_over_peer": round(ours_ips / peer_ips, 2),
        "ratio_ours_over_pil": round(ours_ips / args.threads / pil_ips, 2),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible",
        "tensorflow": tf.__version__,
    }
    print(f"decode + inception crop + flip -> {SIZE}x{SIZE}: "
          f"{result['ours_images_per_sec_per_core']} img/s per core; "
          f"peer (full decode + resize): {result['peer_decode_resize_images_per_sec_per_core']} "
          f"(x{result['ratio_ours_over_peer']}); PIL: {result['pil_images_per_sec_per_core']} "
          f"(x{result['ratio_ours_over_pil']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
