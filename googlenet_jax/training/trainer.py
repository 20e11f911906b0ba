"""train_and_evaluate: wires config, data, model, steps, devices, checkpoints and metrics."""
from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from googlenet_jax import weights as weights_lib
from googlenet_jax.training import checkpointing
from googlenet_jax.training import config_validation
from googlenet_jax.training import init_weights
from googlenet_jax.training import metrics as metrics_lib
from googlenet_jax.training import optim
from googlenet_jax.training import parallel
from googlenet_jax.training import steps
from googlenet_jax.training import train_state as train_state_lib
from googlenet_jax.training.config_validation import ConfigError
from googlenet_jax.model import GoogLeNet

FINAL_METRICS_FILE = "final_metrics.json"
CHECKPOINT_DIR = checkpointing.CHECKPOINT_DIR


class NonFiniteLossError(FloatingPointError):
    """The training loss (or gradient norm) became NaN or infinite; the message is one line."""


def _keep_tensorflow_off_accelerators() -> None:
    # tf.data runs on the host; a GPU build of TensorFlow would otherwise reserve GPU memory.
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")


def create_model(config: ml_collections.ConfigDict, *, num_classes: int,
                 bn_axis_name: str | None) -> GoogLeNet:
    """GoogLeNet from config.model (aux heads on: training uses them)."""
    return GoogLeNet(
        num_classes=num_classes, variant=config.model.variant, aux_logits=True,
        transform_input=config.model.transform_input, dropout_rate=config.model.dropout_rate,
        aux_dropout_rate=config.model.aux_dropout_rate, dtype=jnp.dtype(config.model.dtype),
        bn_axis_name=bn_axis_name)


def _augment_config(config: ml_collections.ConfigDict):
    from googlenet_jax import data
    return data.AugmentConfig(**config.augment.to_dict())


def evaluate(eval_step: Callable, state: Any, batches: Iterator[dict[str, np.ndarray]],
             par: parallel.Parallel, progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Loss, top-1 and top-5 over a whole split (padded rows masked out).

    `state` is what `eval_step` takes first (a TrainState, or variables for
    steps.eval_variables_step). `progress(batches_done)`, if given, is called after each
    batch has run. Returns {"eval_loss", "eval_top1", "eval_top5", "eval_count"}.
    """
    sums = None
    for done, batch in enumerate(parallel.prefetch_to_device(batches, par.put_batch), start=1):
        out = eval_step(state, batch)
        sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        if progress is not None:
            jax.block_until_ready(sums)
            progress(done)
    if sums is None:
        raise ValueError("the evaluation split yielded no batches")
    host = par.metrics_to_host(sums)
    count = max(host["count"], 1.0)
    return {"eval_loss": host["loss"] / count, "eval_top1": host["top1"] / count,
            "eval_top5": host["top5"] / count, "eval_count": host["count"]}


def check_finite(step: int, host_metrics: dict[str, float]) -> None:
    """Raises NonFiniteLossError if the loss or gradient norm is NaN or infinite."""
    for key in ("loss", "grad_norm"):
        value = host_metrics.get(key)
        if value is not None and not math.isfinite(value):
            raise NonFiniteLossError(
                f"training {key} is {value} at step {step}; stopping (try a lower "
                f"optimizer.learning_rate or model.dtype='float32')")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (resuming from `workdir`'s latest checkpoint), evaluates, writes the results.

    Writes into `workdir`: checkpoints/ (orbax), TensorBoard event files, config.json,
    model_info.json (what the weights loader needs, class names included) and
    final_metrics.json. `config.init_weights` starts a fresh run from existing weights.
    Raises ConfigError (one line) for bad configs before compiling.
    Returns the final metrics: step, eval_top1, eval_top5, eval_loss, eval_count,
    train_images_per_sec, train_loss, wall_time_sec.
    """
    wall_start = time.time()
    config_validation.validate_config(config)
    if config.distributed:
        jax.distributed.initialize()
    if config.parallel == "pmap" and jax.process_count() > 1:
        raise ConfigError("config.parallel='pmap' runs one process; use 'mesh' for "
                          f"{jax.process_count()} processes")
    par = parallel.create_parallel(config.parallel)
    config_validation.validate_devices(config, device_count=par.num_devices,
                                       process_count=jax.process_count())
    # Imported only now: TensorFlow's start-up logs would bury a config error above.
    from googlenet_jax import data
    _keep_tensorflow_off_accelerators()
    try:
        info = data.get_dataset_info(config.dataset, config.data_dir,
                                     train_split=config.train_split, eval_split=config.eval_split)
    except (ValueError, OSError) as e:  # unknown dataset, missing folder or split
        raise ConfigError(f"dataset {config.dataset!r}: {e}") from e
    config_validation.validate_num_classes(config, info.num_classes)

    steps_per_epoch = info.num_train_examples / config.batch_size
    num_train_steps = (config.num_train_steps if config.num_train_steps > 0
                       else math.ceil(config.num_epochs * steps_per_epoch))
    learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, num_train_steps)
    tx = optim.create_optimizer(config, learning_rate_fn)
    model = create_model(config, num_classes=info.num_classes, bn_axis_name=par.bn_axis_name)
    create_state = functools.partial(
        train_state_lib.create_train_state, model, tx, seed=config.seed,
        image_size=config.image_size, use_ema=config.ema_decay > 0)
    try:
        abstract_state = jax.eval_shape(create_state)  # traces only: no compilation yet
    except ValueError as e:  # the model rejects the input size or variant
        raise ConfigError(f"model: {e}") from e

    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    resuming = os.path.isdir(checkpoint_dir) and any(n.isdigit() for n in os.listdir(checkpoint_dir))
    # Read before anything is written, so a bad path fails in one line and leaves no workdir.
    initial = (init_weights.load(config.init_weights, variant=config.model.variant)
               if config.init_weights and not resuming else None)

    is_writer = jax.process_index() == 0
    if is_writer:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, weights_lib.CONFIG_FILE), "w") as f:
            f.write(config.to_json(indent=2))
        # What predict / evaluate / export need to use the model, class names included.
        weights_lib.write_model_info(workdir, weights_lib.info_from_config(config, info.class_names))
    checkpointer = checkpointing.Checkpointer(
        checkpoint_dir, every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints)
    state = checkpointer.restore_latest(abstract_state, par.state_sharding(abstract_state))
    if state is None:
        state = create_state()
        if initial is not None:
            state, lines = init_weights.apply(state, initial, tx=tx, use_ema=config.ema_decay > 0)
            for line in lines:
                metrics_lib.log(line)
    else:
        metrics_lib.log(f"resuming from {workdir} at step {int(state.step)}")
    start_step = int(state.step)
    state = par.put_state(state)

    train_step = par.compile_train_step(functools.partial(
        steps.train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn,
        aux_weight=config.aux_weight, label_smoothing=config.label_smoothing,
        ema_decay=config.ema_decay))
    eval_step = par.compile_eval_step(functools.partial(steps.eval_step, model=model))

    def eval_batches():
        return data.eval_batches(
            dataset=config.dataset, data_dir=config.data_dir, split=config.eval_split,
            global_batch_size=config.eval_batch_size, image_size=config.image_size,
            normalization=config.normalization,
            resize_size=round(config.image_size / config.eval_crop_fraction),
            num_devices=par.num_devices, cache=config.cache)

    writer = metrics_lib.MetricWriter(workdir)
    batches = parallel.prefetch_to_device(data.train_batches(
        dataset=config.dataset, data_dir=config.data_dir, split=config.train_split,
        global_batch_size=config.batch_size, image_size=config.image_size,
        normalization=config.normalization, seed=config.seed, augment=_augment_config(config),
        start_step=start_step, num_devices=par.num_devices, shuffle_buffer=config.shuffle_buffer,
        cache=config.cache), par.put_batch)

    metrics_lib.log(
        f"training {config.model.variant} GoogLeNet on {config.dataset} "
        f"({info.num_train_examples} images, {info.num_classes} classes) at "
        f"{config.image_size}x{config.image_size}, batch {config.batch_size} on "
        f"{par.num_devices} {jax.devices()[0].platform} device(s) ({config.parallel}), "
        f"steps {start_step}->{num_train_steps}")
    host_metrics: dict[str, float] = {}
    timed_start = None  # after the first step (compilation excluded from throughput)
    timed_steps = 0
    interval_start, interval_steps = time.time(), 0
    step_metrics = None
    for step in range(start_step, num_train_steps):
        state, step_metrics = train_step(state, next(batches))
        done = step + 1
        if timed_start is None:
            jax.block_until_ready(step_metrics)
            timed_start = interval_start = time.time()
            metrics_lib.log(f"first step (compilation included) took {timed_start - wall_start:.1f}s "
                            "since start")
        else:
            timed_steps += 1
            interval_steps += 1
        is_last = done == num_train_steps
        if done % config.log_every_steps == 0 or is_last:
            host_metrics = par.metrics_to_host(step_metrics)
            check_finite(done, host_metrics)
            now = time.time()
            rate = interval_steps * config.batch_size / max(now - interval_start, 1e-9)
            eta = (num_train_steps - done) * config.batch_size / rate if rate > 0 else math.inf
            interval_start, interval_steps = now, 0
            writer.write_scalars(done, {**host_metrics, "images_per_sec": rate})
            metrics_lib.log(metrics_lib.progress_line(
                step=done, total_steps=num_train_steps, steps_per_epoch=steps_per_epoch,
                metrics=host_metrics, images_per_sec=rate, eta_seconds=eta))
        if done % config.checkpoint_every_steps == 0 or is_last:
            # Never checkpoint a diverged state.
            check_finite(done, par.metrics_to_host(step_metrics))
            checkpointer.save(done, par.get_state(state), force=is_last)
        if config.eval_every_steps and done % config.eval_every_steps == 0 and not is_last:
            eval_start = time.time()
            eval_metrics = evaluate(eval_step, state, eval_batches(), par)
            writer.write_scalars(done, eval_metrics)
            metrics_lib.log(f"step {done}: eval top1 {eval_metrics['eval_top1']:.4f} "
                            f"top5 {eval_metrics['eval_top5']:.4f} loss {eval_metrics['eval_loss']:.4f}")
            # Keep evaluation time out of the training throughput.
            eval_seconds = time.time() - eval_start
            interval_start += eval_seconds
            timed_start += eval_seconds
    jax.block_until_ready(state)
    train_seconds = time.time() - timed_start if timed_start is not None else 0.0
    images_per_sec = timed_steps * config.batch_size / train_seconds if timed_steps else 0.0

    eval_metrics = evaluate(eval_step, state, eval_batches(), par)
    final_step = max(start_step, num_train_steps)
    writer.write_scalars(final_step, eval_metrics)
    writer.close()
    checkpointer.wait()
    checkpointer.close()
    result = {
        "step": final_step,
        **eval_metrics,
        "train_images_per_sec": images_per_sec,
        "train_loss": host_metrics.get("loss"),  # None when no step ran (already done)
        "wall_time_sec": time.time() - wall_start,
    }
    metrics_lib.log(f"step {final_step}: held-out top1 {result['eval_top1']:.4f} "
                    f"top5 {result['eval_top5']:.4f} loss {result['eval_loss']:.4f} | "
                    f"{images_per_sec:.0f} train img/s | {result['wall_time_sec']:.0f}s in all")
    if is_writer:
        with open(os.path.join(workdir, FINAL_METRICS_FILE), "w") as f:
            json.dump(result, f, indent=2)
    return result
