"""train_and_evaluate: wires config, data, model, steps, devices, checkpoints and metrics."""
from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils

from googlenet_jax import console, evaluation, parallel
from googlenet_jax import weights as weights_lib
from googlenet_jax.training import (
    checkpointing,
    distributed,
    init_weights,
    nonfinite,
    preemption,
    profiling,
    reporting,
)
from googlenet_jax.training import config as config_lib
from googlenet_jax.training import programs as programs_lib
from googlenet_jax.training.config import ConfigError
from googlenet_jax.weights import paths
from googlenet_jax.weights.files import step_folders

FINAL_METRICS_FILE = "final_metrics.json"


def _keep_tensorflow_off_accelerators() -> None:
    # tf.data runs on the host; a GPU build of TensorFlow would otherwise reserve GPU memory.
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")


# What a workdir's run is: resuming with other values would mix two runs in one folder (and
# another freeze_up_to or optimizer.name changes the optimizer state's structure). Every field of
# config.model is part of it (a new one too) but those a run may change when it resumes.
RUN_IDENTITY = ("dataset", "train_split", "num_classes", "image_size", "normalization", "freeze_up_to",
                "optimizer.name")
RESUMABLE_MODEL_FIELDS = ("dtype", "dropout_rate", "aux_dropout_rate", "bn_running_var")


def run_identity(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The dotted config fields a workdir's checkpoints and this run must agree on."""
    model = tuple(f"model.{name}" for name in config.model if name not in RESUMABLE_MODEL_FIELDS)
    return RUN_IDENTITY + model


def _field(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part] if isinstance(config, dict) else getattr(config, part)
    return config


def _saved_field(saved: dict, dotted: str) -> Any:
    """A field of a workdir's config.json; one it predates holds configs/default.py's value."""
    try:
        return _field(saved, dotted)
    except KeyError:
        return _field(config_lib.default_config(), dotted)


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A workdir with checkpoints of another run (other data or model), or in a gs:// bucket
    that does not exist, is a one-line ConfigError."""
    try:
        paths.check_bucket(workdir)
    except OSError as e:
        raise ConfigError(f"cannot write to the workdir {workdir}: {e}") from None
    saved_file = os.path.join(workdir, weights_lib.CONFIG_FILE)
    if not (step_folders(os.path.join(workdir, weights_lib.CHECKPOINT_DIR)) and paths.exists(saved_file)):
        return
    try:
        with paths.open_file(saved_file) as f:
            saved = json.load(f)
        differences = [f"{name}={_saved_field(saved, name)!r} there, {_field(config, name)!r} here"
                       for name in run_identity(config) if _saved_field(saved, name) != _field(config, name)]
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"{saved_file} cannot be read ({type(e).__name__}: {e}); is {workdir} a "
                          "train.py workdir?") from None
    if differences:
        raise ConfigError(f"{workdir} holds checkpoints of another run ({'; '.join(differences)}): use "
                          "another --workdir, or that run's config to resume it")


def write_workdir_files(config: ml_collections.ConfigDict, workdir: str,
                        model_info: weights_lib.ModelInfo) -> None:
    """config.json and model_info.json (what predict / evaluate / export need)."""
    try:
        paths.makedirs(workdir)
        with paths.open_file(os.path.join(workdir, weights_lib.CONFIG_FILE), "w") as f:
            f.write(config.to_json(indent=2))
        weights_lib.write_model_info(workdir, model_info)
    except OSError as e:
        raise ConfigError(f"cannot write to the workdir {workdir}: {e.strerror or e}") from None


class Throughput:
    """Images per second of training alone: the first step (compilation) and evaluations excluded."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.start = None  # after the first step
        self.steps = 0
        self._interval_start, self._interval_steps = time.time(), 0

    def step_done(self, metrics: Any, wall_start: float) -> None:
        if self.start is None:
            jax.block_until_ready(metrics)
            self.start = self._interval_start = time.time()
            console.log(f"first step (compilation included) took {self.start - wall_start:.1f}s since start")
        else:
            self.steps += 1
            self._interval_steps += 1

    def interval_rate(self) -> float:
        """Images per second since the last call."""
        now = time.time()
        rate = self._interval_steps * self.batch_size / max(now - self._interval_start, 1e-9)
        self._interval_start, self._interval_steps = now, 0
        return rate

    def pause(self, seconds: float) -> None:
        """Leaves `seconds` (an evaluation) out of the rates."""
        self._interval_start += seconds
        if self.start is not None:
            self.start += seconds

    def overall_rate(self) -> float:
        elapsed = time.time() - self.start if self.start is not None else 0.0
        return self.steps * self.batch_size / elapsed if self.steps else 0.0


def _dataset_info(config: ml_collections.ConfigDict, data) -> Any:
    """The dataset's sizes and classes; it is prepared (the demo, ImageNet from its tars) by
    process 0 alone while the others wait, so that processes sharing a data_dir never race."""
    def read():
        try:
            return data.get_dataset_info(config.dataset, config.data_dir,
                                         train_split=config.train_split, eval_split=config.eval_split)
        except (ValueError, OSError) as e:  # unknown dataset, missing folder, split or tar
            raise ConfigError(f"dataset {config.dataset!r}: {e}") from e

    if jax.process_count() == 1:
        return read()
    info = read() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("dataset prepared")
    return info if info is not None else read()


def _poisoned(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with NaN images (config.inject_nan_at_step, for testing the NaN handling)."""
    return dict(batch, image=batch["image"] * jnp.nan)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (resuming from `workdir`'s newest readable checkpoint), evaluates, writes the results.

    Writes into `workdir`: checkpoints/ (orbax), TensorBoard event files, config.json,
    model_info.json (what the weights loader needs, class names included) and
    final_metrics.json. `config.init_weights` starts a fresh run from existing weights.
    Raises ConfigError (one line) for bad configs before compiling, CheckpointError and
    NonFiniteLossError (one line) when the run cannot go on, and Preempted after saving a
    checkpoint on SIGTERM / SIGINT. Returns the final metrics: step, eval_top1, eval_top5,
    eval_loss, eval_count, train_images_per_sec, train_loss, skipped_steps, wall_time_sec.
    """
    wall_start = time.time()
    config_lib.validate_config(config)
    if config.model.dtype == "float64":  # process-wide and first: arrays made before stay 32-bit
        jax.config.update("jax_enable_x64", True)
    distributed.initialize(config)
    if config.parallel == "pmap" and jax.process_count() > 1:
        raise ConfigError("config.parallel='pmap' runs one process; use 'mesh' for "
                          f"{jax.process_count()} processes")
    parallel_plan = parallel.create_parallel(config.parallel)
    if jax.process_count() > 1:  # every process says it joined: what a hung pod start needs first
        console.log_every_process(
            f"joined the run with {jax.local_device_count()} local {jax.devices()[0].platform} "
            f"device(s), {parallel_plan.num_devices} in all")
    config_lib.validate_devices(config, device_count=parallel_plan.num_devices,
                                process_count=jax.process_count())
    # Imported only now: TensorFlow's start-up logs would bury a config error above.
    from googlenet_jax import data
    _keep_tensorflow_off_accelerators()
    info = _dataset_info(config, data)
    config_lib.validate_num_classes(config, info.num_classes)

    steps_per_epoch = info.num_train_examples / config.batch_size
    num_train_steps = programs_lib.num_train_steps(config, steps_per_epoch)
    # The same builder as `python -m googlenet_jax.aot`: what it measures is what runs here.
    programs = programs_lib.build(config, parallel_plan, num_classes=info.num_classes,
                                  steps_per_epoch=steps_per_epoch, train_steps=num_train_steps)
    tx, create_state, abstract_state = programs.tx, programs.create_state, programs.abstract_state

    checkpoint_dir = os.path.join(workdir, weights_lib.CHECKPOINT_DIR)
    check_workdir(config, workdir)
    resuming = bool(step_folders(checkpoint_dir))
    # Read before anything is written, so a bad path fails in one line and leaves no workdir.
    initial = (init_weights.load(config.init_weights, variant=config.model.variant)
               if config.init_weights and not resuming else None)
    # Class names, eval resize and normalisation: for the tools, and for this run's own eval.
    model_info = weights_lib.info_from_config(config, info.class_names)
    if jax.process_index() == 0:
        write_workdir_files(config, workdir, model_info)
    checkpointer = checkpointing.Checkpointer(
        checkpoint_dir, every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints,
        log=console.log)
    state = checkpointer.restore_latest(abstract_state, parallel_plan.state_sharding(abstract_state))
    if state is None:
        state = create_state()
        if initial is not None:
            state, lines = init_weights.apply(state, initial, tx=tx, use_ema=config.ema_decay > 0)
            for line in lines:
                console.log(line)
    else:
        console.log(f"resuming from {workdir} at step {int(state.step)}")
    start_step = int(state.step)
    state = parallel_plan.put_state(state)

    train_step, eval_step = programs.train_step, programs.eval_step

    def eval_batches():
        return data.eval_batches(
            dataset=config.dataset, data_dir=config.data_dir, split=config.eval_split,
            global_batch_size=config.eval_batch_size, image_size=config.image_size,
            normalization=config.normalization, resize_size=model_info.resize_size,
            num_devices=parallel_plan.num_devices, cache=config.cache)

    writer = reporting.MetricWriter(workdir)
    batches = parallel.prefetch_to_device(data.train_batches(
        dataset=config.dataset, data_dir=config.data_dir, split=config.train_split,
        global_batch_size=config.batch_size, image_size=config.image_size,
        normalization=config.normalization, seed=config.seed, augment=data.AugmentConfig(**config.augment.to_dict()),
        start_step=start_step, num_devices=parallel_plan.num_devices, shuffle_buffer=config.shuffle_buffer,
        cache=config.cache), parallel_plan.put_batch)
    guard = nonfinite.NonFiniteGuard(config.nan_policy, config.nan_max_consecutive_skips,
                                     parallel_plan.metrics_to_host)
    throughput = Throughput(config.batch_size)
    profiler = profiling.StepProfiler(profiling.parse_steps(config.profile_steps), workdir, console.log)
    host_metrics: dict[str, float] = {}

    def log_progress(done: int, step_metrics: Any) -> None:
        guard.check()
        host_metrics.update(parallel_plan.metrics_to_host(step_metrics))
        host_metrics.pop("finite", None)
        rate = throughput.interval_rate()
        eta = (num_train_steps - done) * config.batch_size / rate if rate > 0 else math.inf
        writer.write_scalars(done, {**host_metrics, "images_per_sec": rate, "skipped_steps": guard.skipped,
                                    **reporting.memory_usage()})
        console.log(reporting.progress_line(
            step=done, total_steps=num_train_steps, steps_per_epoch=steps_per_epoch,
            metrics=host_metrics, images_per_sec=rate, eta_seconds=eta, skipped=guard.skipped))

    def save(done: int, *, force: bool) -> None:
        guard.check()  # the newest checkpoint is always a state with no non-finite step in it
        checkpointer.save(done, parallel_plan.get_state(state), force=force)

    def run_eval(done: int, stop: Callable[[], bool]) -> dict[str, float] | None:
        eval_start = time.time()
        eval_metrics = evaluation.evaluate(eval_step, state, eval_batches(), parallel_plan, stop=stop)
        throughput.pause(time.time() - eval_start)
        if eval_metrics is not None:
            writer.write_scalars(done, eval_metrics)
        return eval_metrics

    def stop_for_preemption(done: int, watcher: preemption.PreemptionWatcher) -> None:
        save_start = time.time()
        save(done, force=True)
        checkpointer.wait()
        raise preemption.Preempted(
            f"{watcher.signal_name}: saved step {done} to {checkpoint_dir} in {time.time() - save_start:.1f}s; "
            "run the same command to resume", watcher.exit_code)

    console.log(
        f"training {config.model.variant} GoogLeNet on {config.dataset} "
        f"({info.num_train_examples} images, {info.num_classes} classes) at "
        f"{config.image_size}x{config.image_size}, batch {config.batch_size} on "
        f"{parallel_plan.num_devices} {jax.devices()[0].platform} device(s) ({config.parallel}), "
        f"steps {start_step}->{num_train_steps}")
    try:
        with preemption.PreemptionWatcher(log=console.log) as watcher:
            for done in range(start_step + 1, num_train_steps + 1):
                with profiler.step(done):
                    batch = next(batches)
                    if done == config.inject_nan_at_step:
                        batch = _poisoned(batch)
                    state, step_metrics = train_step(state, batch)
                profiler.step_done(done, step_metrics)
                guard.record(done, step_metrics)
                throughput.step_done(step_metrics, wall_start)
                is_last = done == num_train_steps
                if watcher.should_stop(done):
                    stop_for_preemption(done, watcher)
                if done % config.log_every_steps == 0 or is_last:
                    log_progress(done, step_metrics)
                if done % config.checkpoint_every_steps == 0 or is_last:
                    save(done, force=is_last)
                if config.eval_every_steps and done % config.eval_every_steps == 0 and not is_last:
                    eval_metrics = run_eval(done, stop=functools.partial(watcher.should_stop, done))
                    if eval_metrics is None:
                        stop_for_preemption(done, watcher)
                    console.log(f"step {done}: eval top1 {eval_metrics['eval_top1']:.4f} "
                                    f"top5 {eval_metrics['eval_top5']:.4f} "
                                    f"loss {eval_metrics['eval_loss']:.4f}")
            guard.check()
            jax.block_until_ready(state)
            images_per_sec = throughput.overall_rate()
            final_step = max(start_step, num_train_steps)
            eval_metrics = run_eval(final_step, stop=lambda: watcher.signal is not None)
            checkpointer.wait()
            if eval_metrics is None:  # every step is saved; only the evaluation is left
                raise preemption.Preempted(
                    f"{watcher.signal_name}: training is complete and saved at step {final_step}; "
                    "run the same command for the final evaluation", watcher.exit_code)
    finally:
        profiler.close()
        writer.close()
        checkpointer.close()
    result = {
        "step": final_step,
        **eval_metrics,
        "train_images_per_sec": images_per_sec,
        "train_loss": host_metrics.get("loss"),  # None when no step ran (already done)
        "skipped_steps": guard.skipped,
        "wall_time_sec": time.time() - wall_start,
    }
    console.log(f"step {final_step}: held-out top1 {result['eval_top1']:.4f} "
                    f"top5 {result['eval_top5']:.4f} loss {result['eval_loss']:.4f} | "
                    f"{images_per_sec:.0f} train img/s | {result['wall_time_sec']:.0f}s in all")
    if jax.process_index() == 0:
        with paths.open_file(os.path.join(workdir, FINAL_METRICS_FILE), "w") as f:
            json.dump(result, f, indent=2)
    return result
