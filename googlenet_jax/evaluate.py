"""Accuracy of weights on a whole split, with 1, 10 and the paper's 144 crops.

    python -m googlenet_jax.evaluate --weights PATH --dataset NAME [--data_dir DIR] [--split S]
        [--crops 1,10,144] [--batch_size N] [--json OUT]

Every example of the split counts exactly once (the last batch is padded and masked), on
all local devices. With several crops the softmax is averaged over an image's crops (the
paper's Table 3). A training workdir as weights brings its dataset, split and
preprocessing; its 1-crop figures equal the trainer's final evaluation. `--json OUT` writes
`{"crops": {"1": {"top1", "top5", "loss", "count"}, ...}, ...}`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's C++ start-up logs

from googlenet_jax import cli  # noqa: E402

CROP_SCHEMES = (1, 10, 144)
# Views per device batch the default batch sizes aim at (images x crops).
VIEWS_PER_BATCH = 256


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m googlenet_jax.evaluate",
                                     description=__doc__.split("\n\n")[0])
    cli.add_weights_arguments(parser)
    parser.add_argument("--dataset", help="tfds name, 'image_folder' or 'sklearn_digits' "
                                          "(default: a workdir's own)")
    parser.add_argument("--data_dir", help="tfds data_dir, or the image folder (default: a workdir's own)")
    parser.add_argument("--split", help="split to evaluate (default: a workdir's eval split, else 'test'; "
                                        "'test' means 'validation' for imagenet2012)")
    parser.add_argument("--crops", type=cli.comma_separated(CROP_SCHEMES, int, "crop schemes"), default=[1],
                        help="comma-separated schemes among 1, 10, 144 (default 1)")
    parser.add_argument("--batch_size", type=int, help="images per step, over all devices (default: "
                        f"about {VIEWS_PER_BATCH} views per step, a workdir's eval_batch_size for 1 crop)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    cli.check_output_folder(parser, "--json", args.json)
    return args


def default_batch_size(crops: int, num_devices: int, workdir_batch: int | None) -> int:
    """Images per step: a workdir's eval_batch_size for 1 crop, else ~VIEWS_PER_BATCH views;
    always a multiple of the device count."""
    images = workdir_batch if (crops == 1 and workdir_batch) else max(1, VIEWS_PER_BATCH // crops)
    return -(-images // num_devices) * num_devices


class Progress:
    """A progress line with ETA on stderr, at most every few seconds."""

    def __init__(self, label: str, total_batches: int, batch_size: int, every_seconds: float = 5.0):
        self.label, self.total, self.batch_size = label, total_batches, batch_size
        self.every = every_seconds
        self.start = self.last = time.time()

    def __call__(self, done: int) -> None:
        now = time.time()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done * self.batch_size / max(now - self.start, 1e-9)
        eta = (self.total - done) * self.batch_size / rate if rate > 0 else math.inf
        from googlenet_jax.training.metrics import format_duration
        print(f"{self.label}: batch {done}/{self.total} | {rate:.1f} img/s | ETA {format_duration(eta)}",
              file=sys.stderr, flush=True)


def format_table(results: dict[int, dict[str, float]]) -> str:
    """The paper's Table 3 layout: crops, cost (forward passes per image), errors, loss, count."""
    lines = [f"{'crops':>5}  {'cost':>4}  {'top-1':>7}  {'top-5':>7}  {'top-1 err':>9}  {'top-5 err':>9}  "
             f"{'vs 1 crop':>9}  {'loss':>7}  {'count':>7}"]
    base = results.get(1)
    for crops, r in results.items():
        # Table 3's "compared to base": the change in top-5 error against 1 crop.
        delta = "base" if crops == 1 or base is None else f"{100 * (base['top5'] - r['top5']):+.2f}%"
        lines.append(f"{crops:>5}  {crops:>4}  {100 * r['top1']:>6.2f}%  {100 * r['top5']:>6.2f}%  "
                     f"{100 * (1 - r['top1']):>8.2f}%  {100 * (1 - r['top5']):>8.2f}%  {delta:>9}  "
                     f"{r['loss']:>7.4f}  {int(r['count']):>7d}")
    return "\n".join(lines)


def run(args) -> tuple[dict, dict[int, dict[str, float]]]:
    """Evaluates every crop scheme asked; returns (the JSON report, {crops: metrics})."""
    import functools

    from googlenet_jax import data
    from googlenet_jax.training import parallel, steps, trainer

    loaded = cli.load_weights(args)
    info = loaded.info
    dataset = args.dataset or info.dataset
    if not dataset:
        raise ValueError(f"{args.weights}: weights from {info.source} carry no dataset; pass --dataset")
    data_dir = args.data_dir or (info.data_dir if dataset == info.dataset else None)
    split = args.split or (info.eval_split if dataset == info.dataset and info.eval_split else "test")
    dataset_info = data.get_dataset_info(dataset, data_dir, eval_split=split)
    if dataset_info.num_classes != info.num_classes:
        raise ValueError(f"the weights have {info.num_classes} classes but dataset {dataset!r} has "
                         f"{dataset_info.num_classes}")

    par = parallel.MeshParallel()
    eval_step = par.compile_eval_step(functools.partial(steps.eval_variables_step, model=loaded.model))
    variables = par.put_state(loaded.variables)
    workdir_batch = _workdir_eval_batch_size(info)
    results = {}
    for crops in args.crops:
        batch_size = args.batch_size or default_batch_size(crops, par.num_devices, workdir_batch)
        if batch_size % par.num_devices:
            raise ValueError(f"--batch_size {batch_size} does not divide over {par.num_devices} devices")
        batches = data.eval_batches(
            dataset=dataset, data_dir=data_dir, split=split, global_batch_size=batch_size,
            image_size=info.image_size, normalization=info.normalization, crops=crops,
            resize_size=info.resize_size, num_devices=par.num_devices)
        total = math.ceil(dataset_info.num_eval_examples / batch_size)
        metrics = trainer.evaluate(eval_step, variables, batches, par,
                                   progress=Progress(f"{crops} crop(s)", total, batch_size))
        results[crops] = {"top1": metrics["eval_top1"], "top5": metrics["eval_top5"],
                          "loss": metrics["eval_loss"], "count": int(metrics["eval_count"])}
    return {"weights": info.path, "dataset": dataset, "split": split,
            "image_size": info.image_size, "crops": {str(c): r for c, r in results.items()}}, results


def _workdir_eval_batch_size(info) -> int | None:
    """The eval batch size the trainer used (1-crop figures then repeat its very batches)."""
    if not info.workdir:
        return None
    from googlenet_jax import weights as weights_lib
    with open(os.path.join(info.workdir, weights_lib.CONFIG_FILE)) as f:
        return int(json.load(f).get("eval_batch_size") or 0) or None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report, results = run(args)
    except (ValueError, OSError, ImportError) as error:
        text = str(error).strip().splitlines()
        print(f"error: {text[0] if text else type(error).__name__}", file=sys.stderr)
        return 2
    print(f"{report['weights']} on {report['dataset']} [{report['split']}] at "
          f"{report['image_size']}x{report['image_size']}")
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
