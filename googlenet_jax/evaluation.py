"""Evaluation in one place: the crop-averaged eval step and the padded, masked loop over a split.

The trainer evaluates with `evaluate` (on its TrainState, through training/steps.py) and
`python -m googlenet_jax.evaluate` with `evaluate_weights` (on any weights `load` reads), so
their 1-crop figures are the same computation on the same batches. `evaluate_ensemble` is the
paper's Table 3 protocol over several weights: each model's per-example softmax averaged over
crops (`split_probabilities`), then over the models.
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from googlenet_jax import console, parallel
from googlenet_jax.model import folding, losses
from googlenet_jax.weights import CONFIG_FILE, LoadedModel, paths

# Views per device batch the default batch sizes aim at (images x crops).
VIEWS_PER_BATCH = 256


def crop_averaged_logits(model, variables: Any, images: jax.Array) -> jax.Array:
    """Logits of a batch of single views, or the log of the crop-averaged softmax of multi-crop views.

    images: (B, S, S, 3) -> the model's logits (B, C); (B, K, S, S, 3) (K crops of each
    image, e.g. 10 or the paper's 144) -> log(mean_k softmax(logits_k)) (B, C), float32.
    Log-probabilities are valid logits: their softmax is the averaged probabilities, so
    the loss and the top-k of the averaged prediction follow from them.
    """
    if images.ndim == 4:
        return model.apply(variables, images, train=False)
    batch, crops = images.shape[:2]
    logits = model.apply(variables, images.reshape((batch * crops,) + images.shape[2:]), train=False)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, crops, -1)
    return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(float(crops))


def eval_step(variables: Any, batch: dict[str, jax.Array], *, model, axis_name: Optional[str]) -> dict[str, jax.Array]:
    """Masked sums of loss, top-1 and top-5 hits and example count for one eval batch.

    variables: {"params"[, "batch_stats"]}. batch: {"image": (B, S, S, 3) or (B, K, S, S, 3)
    (K crops per image, predictions averaged), "label", "mask"}; padded examples (mask
    False) do not count. Sums are over the global batch (psum'd over `axis_name` under pmap).
    """
    logits = crop_averaged_logits(model, variables, batch["image"])
    sums = losses.eval_sums(logits, batch["label"], batch["mask"])
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def evaluate(step: Callable, state: Any, batches: Iterator[dict[str, np.ndarray]],
             parallel_plan: parallel.Parallel, progress: Callable[[int], None] | None = None,
             stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
    """Loss, top-1 and top-5 over a whole split (padded rows masked out).

    `step` is a compiled eval step and `state` what it takes first (a TrainState for the
    trainer's, variables for `eval_step`). `progress(batches_done)`, if given, is called after
    each batch has run. Returns {"eval_loss", "eval_top1", "eval_top5", "eval_count"}, or None
    when `stop()` turned True (a preemption) before the split was done.
    """
    sums = None
    for done, batch in enumerate(parallel.prefetch_to_device(batches, parallel_plan.put_batch), start=1):
        if stop is not None and stop():
            return None
        out = step(state, batch)
        sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        if progress is not None:
            jax.block_until_ready(sums)
            progress(done)
    if sums is None:
        raise ValueError("the evaluation split yielded no batches")
    host = parallel_plan.metrics_to_host(sums)
    count = max(host["count"], 1.0)
    return {"eval_loss": host["loss"] / count, "eval_top1": host["top1"] / count,
            "eval_top5": host["top5"] / count, "eval_count": host["count"]}


def default_batch_size(crops: int, num_devices: int, workdir_batch: int | None) -> int:
    """Images per step: a workdir's eval_batch_size for 1 crop (so the trainer's very batches
    repeat), else ~VIEWS_PER_BATCH views; always a multiple of the device count."""
    images = workdir_batch if (crops == 1 and workdir_batch) else max(1, VIEWS_PER_BATCH // crops)
    return -(-images // num_devices) * num_devices


def _workdir_eval_batch_size(workdir: str | None) -> int | None:
    if not workdir:
        return None
    with paths.open_file(os.path.join(workdir, CONFIG_FILE)) as f:
        return int(json.load(f).get("eval_batch_size") or 0) or None


def probabilities_step(variables: Any, batch: dict[str, jax.Array], *, model,
                       axis_name: Optional[str]) -> dict[str, jax.Array]:
    """Each example's softmax averaged over its crops (B, C) float32, with its label and mask:
    what an ensemble averages over models."""
    del axis_name  # per example: nothing is summed over the devices
    logits = crop_averaged_logits(model, variables, batch["image"])
    return {"probabilities": jax.nn.softmax(logits.astype(jnp.float32), axis=-1), "label": batch["label"],
            "mask": batch["mask"]}


def _split_of(loaded: LoadedModel, dataset: str | None, data_dir: str | None, split: str | None):
    """(dataset, data_dir, split, its tfds info) for `loaded`: a workdir's own unless given."""
    from googlenet_jax import data  # TensorFlow: imported when a split is read

    info = loaded.info
    dataset = dataset or info.dataset
    if not dataset:
        raise ValueError(f"{info.path}: weights from {info.source} carry no dataset; pass --dataset")
    same = dataset == info.dataset
    data_dir = data_dir or (info.data_dir if same else None)
    split = split or (info.eval_split if same and info.eval_split else "test")
    dataset_info = data.get_dataset_info(dataset, data_dir, eval_split=split)
    if dataset_info.num_classes != info.num_classes:
        raise ValueError(f"the weights have {info.num_classes} classes but dataset {dataset!r} has "
                         f"{dataset_info.num_classes}")
    return dataset, data_dir, split, dataset_info


def _split_batches(loaded: LoadedModel, dataset: str, data_dir: str | None, split: str, crops: int,
                   size: int, num_devices: int):
    """The split's padded eval batches, preprocessed as `loaded` wants them."""
    from googlenet_jax import data

    info = loaded.info
    if size % num_devices:
        raise ValueError(f"--batch_size {size} does not divide over {num_devices} devices")
    return data.eval_batches(
        dataset=dataset, data_dir=data_dir, split=split, global_batch_size=size, image_size=info.image_size,
        normalization=info.normalization, crops=crops, resize_size=info.resize_size, num_devices=num_devices)


def _on_every_device(step_fn: Callable, loaded: LoadedModel):
    """(the MeshParallel over every local device, `step_fn` compiled there for `loaded`'s model
    with BatchNorm folded in as the Classifier runs it, the folded variables put there)."""
    parallel_plan = parallel.MeshParallel()
    model, variables = folding.fold_batch_norm(loaded.model, loaded.variables)
    step = parallel_plan.compile_eval_step(functools.partial(step_fn, model=model))
    return parallel_plan, step, parallel_plan.put_state(variables)


def evaluate_weights(loaded: LoadedModel, *, dataset: str | None = None, data_dir: str | None = None,
                     split: str | None = None, crops: Sequence[int] = (1,), batch_size: int | None = None,
                     show_progress: bool = True) -> dict:
    """Every crop scheme asked (1, 10, 144) of `loaded` on a whole split, on all local devices.

    dataset, data_dir, split default to a workdir's own (its eval split; else "test").
    Returns {"weights", "dataset", "split", "image_size", "crops": {"1": {"top1", "top5",
    "loss", "count"}, ...}}. Raises ValueError for missing or mismatched data.
    """
    info = loaded.info
    dataset, data_dir, split, dataset_info = _split_of(loaded, dataset, data_dir, split)
    parallel_plan, step, variables = _on_every_device(eval_step, loaded)
    workdir_batch = _workdir_eval_batch_size(info.workdir)
    results = {}
    for count in crops:
        size = batch_size or default_batch_size(count, parallel_plan.num_devices, workdir_batch)
        batches = _split_batches(loaded, dataset, data_dir, split, count, size, parallel_plan.num_devices)
        total = math.ceil(dataset_info.num_eval_examples / size)
        progress = console.Progress(f"{count} crop(s)", total, size) if show_progress else None
        metrics = evaluate(step, variables, batches, parallel_plan, progress=progress)
        results[str(count)] = {"top1": metrics["eval_top1"], "top5": metrics["eval_top5"],
                               "loss": metrics["eval_loss"], "count": int(metrics["eval_count"])}
    return {"weights": info.path, "dataset": dataset, "split": split, "image_size": info.image_size,
            "crops": results}


def split_probabilities(loaded: LoadedModel, *, dataset: str, data_dir: str | None, split: str, num_examples: int,
                        crops: int, batch_size: int | None = None,
                        show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C) float32: each example's softmax averaged over its crops, labels (N,))
    of every example of the split (`num_examples` of them), in the split's order."""
    parallel_plan, step, variables = _on_every_device(probabilities_step, loaded)
    size = batch_size or default_batch_size(crops, parallel_plan.num_devices, None)
    batches = _split_batches(loaded, dataset, data_dir, split, crops, size, parallel_plan.num_devices)
    total = math.ceil(num_examples / size)
    progress = console.Progress(f"{loaded.info.path}, {crops} crop(s)", total, size) if show_progress else None
    probabilities, labels = [], []
    for done, batch in enumerate(parallel.prefetch_to_device(batches, parallel_plan.put_batch), start=1):
        out = jax.device_get(step(variables, batch))
        probabilities.append(out["probabilities"][out["mask"]])
        labels.append(out["label"][out["mask"]])
        if progress is not None:
            progress(done)
    return np.concatenate(probabilities), np.concatenate(labels)


def ensemble_row(models: int, crops: int, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Table 3's row for averaged `probabilities` (N, C): cost in forward passes per image
    (models x crops), top-1 and top-5 (ranked as the eval step ranks: classes scored strictly
    higher than the label's), the mean cross-entropy of the averaged prediction, count."""
    label_scores = probabilities[np.arange(len(labels)), labels]
    rank = (probabilities > label_scores[:, None]).sum(axis=1)
    loss = -np.log(np.maximum(label_scores, np.finfo(np.float32).tiny))
    return {"models": models, "crops": crops, "cost": models * crops, "top1": float(np.mean(rank < 1)),
            "top5": float(np.mean(rank < 5)), "loss": float(loss.mean()), "count": int(len(labels))}


def evaluate_ensemble(models: Sequence[LoadedModel], *, dataset: str | None = None, data_dir: str | None = None,
                      split: str | None = None, crops: Sequence[int] = (1,), batch_size: int | None = None,
                      show_progress: bool = True) -> dict:
    """The paper's Table 3 protocol: each model's softmax averaged over its crops, then over the
    models, for every crop scheme asked. The split (and a workdir's dataset) is the first
    model's; the models may be of any kind, with the same class list. Returns
    {"weights": [paths], "dataset", "split", "crops": {"1": the first model's figures, ...},
    "ensemble": [rows of ensemble_row: 1 model, then all of them, at each crop count]}."""
    first = models[0].info
    for loaded in models[1:]:
        if tuple(loaded.info.class_names) != tuple(first.class_names):
            raise ValueError(f"{loaded.info.path}: its {loaded.info.num_classes} classes are not those of "
                             f"{first.path} ({first.num_classes} classes): an ensemble averages the same classes")
    dataset, data_dir, split, dataset_info = _split_of(models[0], dataset, data_dir, split)
    rows, first_model = [], {}
    for count in crops:
        total, labels = None, None
        for loaded in models:
            probabilities, model_labels = split_probabilities(
                loaded, dataset=dataset, data_dir=data_dir, split=split, num_examples=dataset_info.num_eval_examples,
                crops=count, batch_size=batch_size, show_progress=show_progress)
            if labels is None:
                labels = model_labels
                rows.append(ensemble_row(1, count, probabilities, labels))
                first_model[str(count)] = {k: rows[-1][k] for k in ("top1", "top5", "loss", "count")}
            elif not np.array_equal(labels, model_labels):
                raise ValueError(f"{loaded.info.path}: the split came in another order than for {first.path}")
            total = probabilities.astype(np.float64) if total is None else total + probabilities
        if len(models) > 1:
            rows.append(ensemble_row(len(models), count, total / len(models), labels))
    return {"weights": [loaded.info.path for loaded in models], "dataset": dataset, "split": split,
            "crops": first_model, "ensemble": rows}
