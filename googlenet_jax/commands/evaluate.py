"""Accuracy of weights on a whole split, with 1, 10 and the paper's 144 crops.

    python -m googlenet_jax.evaluate --weights PATH [--weights PATH ...] --dataset NAME [--data_dir DIR]
        [--split S] [--crops 1,10,144] [--batch_size N] [--json OUT]

Every example of the split counts exactly once (the last batch is padded and masked), on
all local devices. With several crops the softmax is averaged over an image's crops (the
paper's Table 3). A training workdir as weights brings its dataset, split and
preprocessing; its 1-crop figures equal the trainer's final evaluation. `--json OUT` writes
`{"crops": {"1": {"top1", "top5", "loss", "count"}, ...}, ...}`.

`--weights` repeated is an ensemble, the paper's Table 3 protocol: each model's softmax averaged
over its crops and then over the models (any kinds of weights, the same class list; each model
preprocessed as its weights say). It prints Table 3's layout: for each crop count asked, a row
for the first model alone and one for all of them, with the cost in forward passes per image
(models x crops); `--json` adds `"ensemble": [{"models", "crops", "cost", "top1", "top5",
"loss", "count"}, ...]`, and "crops" holds the first model's figures.
"""
from __future__ import annotations

import json
import sys

from googlenet_jax.commands import common
from googlenet_jax.model.input_spec import EVAL_CROPS


def parse_args(argv=None):
    parser = common.ArgumentParser("evaluate", __doc__)
    common.add_weights_arguments(parser, several=True)
    parser.add_argument("--dataset", help="tfds name, 'image_folder' or 'sklearn_digits' "
                                          "(default: a workdir's own)")
    parser.add_argument("--data_dir", help="tfds data_dir, or the image folder (default: a workdir's own)")
    parser.add_argument("--split", help="split to evaluate (default: a workdir's eval split, else 'test'; "
                                        "'test' means 'validation' for imagenet2012)")
    parser.add_argument("--crops", type=common.comma_separated(EVAL_CROPS, int, "crop schemes"), default=[1],
                        help="comma-separated schemes among 1, 10, 144 (default 1)")
    parser.add_argument("--batch_size", type=int, help="images per step, over all devices (default: "
                        "about 256 views per step, a workdir's eval_batch_size for 1 crop)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = parser.parse_args(argv)
    parser.check_positive("--batch_size", args.batch_size)
    parser.check_output_folder("--json", args.json)
    return args


def format_table(crops: dict[str, dict[str, float]]) -> str:
    """The paper's Table 3 layout: crops, cost (forward passes per image), errors, loss, count."""
    lines = [f"{'crops':>5}  {'cost':>4}  {'top-1':>7}  {'top-5':>7}  {'top-1 err':>9}  {'top-5 err':>9}  "
             f"{'vs 1 crop':>9}  {'loss':>7}  {'count':>7}"]
    base = crops.get("1")
    for count, r in crops.items():
        # Table 3's "compared to base": the change in top-5 error against 1 crop.
        delta = "base" if count == "1" or base is None else f"{100 * (base['top5'] - r['top5']):+.2f}%"
        lines.append(f"{count:>5}  {count:>4}  {100 * r['top1']:>6.2f}%  {100 * r['top5']:>6.2f}%  "
                     f"{100 * (1 - r['top1']):>8.2f}%  {100 * (1 - r['top5']):>8.2f}%  {delta:>9}  "
                     f"{r['loss']:>7.4f}  {int(r['count']):>7d}")
    return "\n".join(lines)


def format_ensemble(rows: list[dict]) -> str:
    """Table 3's layout: models, crops, cost (forward passes per image), errors, and the change in
    top-5 error against 1 model with 1 crop."""
    lines = [f"{'models':>6}  {'crops':>5}  {'cost':>5}  {'top-1':>7}  {'top-5':>7}  {'top-1 err':>9}  "
             f"{'top-5 err':>9}  {'vs base':>8}"]
    base = next((r for r in rows if (r["models"], r["crops"]) == (1, 1)), None)
    for r in rows:
        delta = "base" if r is base or base is None else f"{100 * (base['top5'] - r['top5']):+.2f}%"
        lines.append(f"{r['models']:>6}  {r['crops']:>5}  {r['cost']:>5}  {100 * r['top1']:>6.2f}%  "
                     f"{100 * r['top5']:>6.2f}%  {100 * (1 - r['top1']):>8.2f}%  {100 * (1 - r['top5']):>8.2f}%  "
                     f"{delta:>8}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    common.prepare_tensorflow()

    def body() -> int:
        from googlenet_jax import evaluation  # after parsing: keeps --help instant

        models = [common.load_weights(args, path) for path in args.weights]
        options = dict(dataset=args.dataset, data_dir=args.data_dir, split=args.split, crops=args.crops,
                       batch_size=args.batch_size)
        if len(models) == 1:
            report = evaluation.evaluate_weights(models[0], **options)
            size = report["image_size"]
            print(f"{report['weights']} on {report['dataset']} [{report['split']}] at {size}x{size}")
            print(format_table(report["crops"]))
        else:
            report = evaluation.evaluate_ensemble(models, **options)
            print(f"an ensemble of {len(models)} models on {report['dataset']} [{report['split']}]: "
                  + ", ".join(report["weights"]))
            print(format_ensemble(report["ensemble"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
        return common.EXIT_OK

    return common.run("evaluate", body)


if __name__ == "__main__":
    sys.exit(main())
