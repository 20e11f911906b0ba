"""End-to-end training throughput (the input pipeline included) beside the model-only figure.

    python benchmarks/end_to_end.py [--folder_steps 20] [--data_dir DIR] [--skip_demo] [--json OUT.json]

Two trainings, each run as users run it (`python train.py`, a fresh process and workdir), and
each against the same model's train step on a device-resident batch of the same shape
(`benchmarks/bench.py`'s measurement, in this process):
  demo          `python train.py`: the embedded digits, 64x64, batch 32 (the whole demo);
  image folder  `configs/imagenet_torchvision.py` on an image folder of ImageNet-like JPEGs
                (500x375 and ImageNet's other usual sizes, written by benchmarks/input_pipeline.py)
                at 224x224, batch 32, `--folder_steps` steps: read, decode, Inception crop,
                flip and normalise on the host while the model trains.
The trainer's `train_images_per_sec` leaves out the first (compiling) step and evaluations.
`end_to_end / model_only` below 1 is time the model waited for input (or lost to the input
pipeline's share of the CPU). On a shared machine only ratios from one run compare.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from googlenet_jax.commands.common import prepare_tensorflow  # noqa: E402

prepare_tensorflow()

import jax  # noqa: E402

import bench  # noqa: E402
import input_pipeline  # noqa: E402


def model_only_img_s(batch: int, image_size: int, steps: int = 3, repeats: int = 3) -> float:
    images, labels = bench.synthetic_batch(batch, image_size)
    (train,), _ = bench.jax_contestants(images, labels, "float32", jax.devices()[0], jobs=("train",))
    for _ in range(repeats):
        train.time_block(steps)
    return train.summary()["img_s"]


def train_py(workdir: str, *flags: str) -> dict:
    """Runs train.py as a user does and returns its final_metrics.json."""
    command = [sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", *flags]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((pathlib.Path(workdir) / "final_metrics.json").read_text())


def measure(name: str, metrics: dict, batch: int, image_size: int) -> dict:
    model_only = model_only_img_s(batch, image_size)
    entry = {"end_to_end_img_s": metrics["train_images_per_sec"], "model_only_img_s": model_only,
             "ratio": metrics["train_images_per_sec"] / model_only, "batch": batch,
             "image_size": image_size, "eval_top1": metrics["eval_top1"], "steps": metrics["step"],
             "wall_time_sec": metrics["wall_time_sec"]}
    print(f"{name:13s} end to end {entry['end_to_end_img_s']:7.1f} img/s | model only "
          f"{model_only:7.1f} img/s | x{entry['ratio']:.2f}", flush=True)
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder_steps", type=int, default=20)
    parser.add_argument("--folder_images", type=int, default=1000)
    parser.add_argument("--data_dir",
                        help="where to write (or reuse) the image folder; default: a temporary one")
    parser.add_argument("--skip_demo", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.folder_steps < 2:
        parser.error("--folder_steps must be at least 2 (the first step compiles and is not timed)")
    with tempfile.TemporaryDirectory() as scratch:
        # The JPEGs first: their writer forks worker processes, which must happen before JAX
        # starts its threads in this process.
        data_dir = args.data_dir or os.path.join(scratch, "folder")
        os.makedirs(data_dir, exist_ok=True)
        input_pipeline.prepare_data(data_dir, train=args.folder_images, test=64, seed=0)
        result = {"device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count()}
        if not args.skip_demo:
            result["demo"] = measure("demo", train_py(os.path.join(scratch, "demo")), 32, 64)
        metrics = train_py(
            os.path.join(scratch, "folder_run"),
            "--config", str(ROOT / "configs" / "imagenet_torchvision.py"),
            "--config.dataset=image_folder", f"--config.data_dir={data_dir}", "--config.eval_split=test",
            f"--config.num_classes={len(input_pipeline.SOURCES)}", "--config.batch_size=32",
            "--config.eval_batch_size=32", f"--config.num_train_steps={args.folder_steps}",
            "--config.cache=False", "--config.ema_decay=0.0")
        result["image_folder_224"] = measure("image folder", metrics, 32, 224)
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
