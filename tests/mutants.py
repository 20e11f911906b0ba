"""Mutation check: are the tests able to fail? Not part of pytest.

    python tests/mutants.py            # every mutant
    python tests/mutants.py --list     # names, files and the tests that should catch each
    python tests/mutants.py NAME ...   # some of them

Each mutant is one deliberate bug: a piece of source text replaced by a wrong one. For each,
the working tree (tracked and untracked files, not ignored ones) is copied into a scratch
folder, the bug is planted there, and the tests that should catch it run there. A mutant is
caught when one of those tests fails. Prints one line per mutant and exits 1 if any is not
caught, or 2 if a mutant no longer applies (its source text changed: update the list).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids or files that must fail


STEPS = "tests/training/test_steps.py"
EVALUATION = "tests/test_evaluation.py"
LOSSES = "tests/model/test_losses.py"
OPTIM = "tests/training/test_optim.py"
PARITY_TRAINING = "tests/parity/test_replay.py"
SIGNALS = "tests/commands/test_train_signals.py"
MULTIPROCESS = "tests/commands/test_launch.py"

MUTANTS = [
    Mutant("gradient ascent", "googlenet_jax/training/steps.py",
           "new_params = optax.apply_updates(state.params, updates)",
           "new_params = jax.tree.map(lambda p, u: p - u, state.params, updates)",
           (STEPS,)),
    Mutant("Polyak weights swapped", "googlenet_jax/training/steps.py",
           "lambda e, p: e + (1.0 - decay) * (p - e)", "lambda e, p: p + (1.0 - decay) * (e - p)",
           (STEPS,)),
    Mutant("Polyak average not debiased", "googlenet_jax/training/steps.py",
           "decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))", "decay = ema_decay + 0 * step",
           (STEPS,)),
    Mutant("multi-crop averages logits", "googlenet_jax/evaluation.py",
           "return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(float(crops))",
           "return logits.astype(jnp.float32).reshape(batch, crops, -1).mean(axis=1)",
           (EVALUATION,)),
    Mutant("image-folder labels from each split's folders", "googlenet_jax/data/sources.py",
           "class_names = _class_folders(train_dir if os.path.isdir(train_dir) else split_dir)",
           "class_names = _class_folders(split_dir)",
           ("tests/data/test_pipeline.py",)),
    Mutant("aux weight split between the heads", "googlenet_jax/model/losses.py",
           'total = total + aux_weight * parts[f"loss_aux{i}"]',
           'total = total + aux_weight / 2 * parts[f"loss_aux{i}"]',
           (f"{LOSSES}::test_loss_is_main_plus_weighted_aux_cross_entropies",)),
    Mutant("label smoothing ignored", "googlenet_jax/model/losses.py",
           "    if label_smoothing:\n", "    if False:\n",
           (f"{LOSSES}::test_label_smoothing_spreads_target_mass_over_all_classes",)),
    Mutant("padded examples counted", "googlenet_jax/model/losses.py",
           'weights = mask.astype(jnp.float32)', 'weights = jnp.ones_like(mask, jnp.float32)',
           (f"{LOSSES}::test_eval_sums_ignore_padded_examples_and_count_top5",)),
    Mutant("top-5 counts the top 4", "googlenet_jax/model/losses.py",
           '"top5": ((rank < 5) * weights).sum()', '"top5": ((rank < 4) * weights).sum()',
           (f"{LOSSES}::test_eval_sums_ignore_padded_examples_and_count_top5",)),
    Mutant("weight decay on every parameter", "googlenet_jax/training/optim.py",
           "lambda p: jnp.ndim(p) > 1, params", "lambda p: jnp.ndim(p) >= 0, params",
           (f"{OPTIM}::test_weight_decay_applies_to_kernels_only_and_matches_torch_sgd",)),
    Mutant("learning-rate schedule one step late", "googlenet_jax/training/optim.py",
           "    warmup = optax.linear_schedule(0.0, peak, warmup_steps)\n",
           "    warmup = lambda step: peak * jnp.maximum(step - 1, 0) / warmup_steps  # noqa: E731\n",
           (STEPS,)),
    Mutant("LARS trust ratio on biases and BatchNorm", "googlenet_jax/training/optim.py",
           "trust_ratio_mask=kernel_mask", "trust_ratio_mask=True",
           (f"{OPTIM}::test_lars_update_equals_the_trust_ratio_by_hand",)),
    Mutant("gradient clipping skipped", "googlenet_jax/training/optim.py",
           "    if opt.grad_clip_norm > 0:\n", "    if opt.grad_clip_norm < 0:\n",
           (f"{STEPS}::test_gradient_clipping_scales_the_global_norm_down_to_the_limit",)),
    Mutant("weight_decay_params ignored", "googlenet_jax/training/optim.py",
           "functools.partial(weight_decay_mask, which=opt.weight_decay_params)",
           'functools.partial(weight_decay_mask, which="kernels")',
           (f"{PARITY_TRAINING}::test_lars_clipping_nesterov_and_the_polyak_average_map_onto_torch",)),
    Mutant("unbiased running variance left biased", "googlenet_jax/model/blocks.py",
           "new_var + (new_var - self.bn.momentum * old_var) / (count - 1)", "new_var",
           (f"{PARITY_TRAINING}::test_unbiased_running_variance_is_torchs_rule",)),
    Mutant("BatchNorm momentum as in torch", "googlenet_jax/model/blocks.py",
           "nn.BatchNorm(momentum=0.9,", "nn.BatchNorm(momentum=0.1,",
           ("tests/parity/test_model_parity.py::test_train_mode_logits_and_aux_logits_match_reference",)),
    Mutant("BatchNorm in train mode at evaluation", "googlenet_jax/model/blocks.py",
           "y = self.bn(y, use_running_average=not train)", "y = self.bn(y, use_running_average=False)",
           ("tests/parity/test_model_parity.py::test_eval_logits_match_reference",)),
    Mutant("dropout left on at evaluation", "googlenet_jax/model/network.py",
           "x = nn.Dropout(rate)(x, deterministic=not train)", "x = nn.Dropout(rate)(x, deterministic=False)",
           ("tests/parity/test_model_parity.py::test_eval_logits_match_reference",)),
    Mutant("--raw_params inverted", "googlenet_jax/commands/common.py",
           "use_average=not args.raw_params", "use_average=args.raw_params",
           ("tests/commands/test_evaluate.py",)),
    Mutant("init_weights from a workdir takes its raw parameters", "googlenet_jax/training/init_weights.py",
           "loaded = weights_lib.load(path)", "loaded = weights_lib.load(path, use_average=False)",
           ("tests/training/test_init_weights.py::test_a_workdir_starts_the_run_from_its_polyak_average",)),
    Mutant("init_weights leaves the BatchNorm statistics fresh", "googlenet_jax/training/init_weights.py",
           'loaded.variables.get("batch_stats")', "{}",
           ("tests/training/test_init_weights.py::test_a_converted_orbax_checkpoint_starts_the_run_but_for_the_classifiers",)),
    Mutant("learning rate scaled to each process's share of the batch", "googlenet_jax/training/optim.py",
           "    peak = learning_rate(config)\n", "    peak = learning_rate(config) / jax.process_count()\n",
           (f"{MULTIPROCESS}::test_two_processes_train_like_one_process_fed_the_same_global_batches",)),
    Mutant("float64 runs keep float32 parameters", "googlenet_jax/training/programs.py",
           'param_dtype=jnp.float64 if config.model.dtype == "float64" else jnp.float32',
           "param_dtype=jnp.float32",
           (f"{MULTIPROCESS}::test_two_processes_train_like_one_process_fed_the_same_global_batches",)),
    Mutant("center crop offset floored", "googlenet_jax/data/crops.py",
           "return tf.cast(tf.round(slack / 2.0), tf.int32)", "return tf.cast(slack // 2, tf.int32)",
           ("tests/data/test_crops.py",)),
    Mutant("JPEG decoded with the fast IDCT", "googlenet_jax/data/preprocess.py",
           'JPEG_DCT_METHOD = "INTEGER_ACCURATE"', 'JPEG_DCT_METHOD = "INTEGER_FAST"',
           ("tests/data/test_preprocess.py",)),
    Mutant("SIGINT exits as SIGTERM", "googlenet_jax/training/preemption.py",
           "return 128 + int(self.signal or signal.SIGTERM)", "return 128 + int(signal.SIGTERM)",
           (f"{SIGNALS}::test_ctrl_c_saves_the_step_in_flight_and_exits_130",)),
    Mutant("second Ctrl-C interrupts the save", "googlenet_jax/training/preemption.py",
           "        else:\n            self._log(",
           "        else:\n            raise KeyboardInterrupt\n            self._log(",
           (f"{SIGNALS}::test_a_second_ctrl_c_while_saving_is_reported_and_the_save_completes",)),
    Mutant("launcher keeps signals to itself", "googlenet_jax/training/launcher.py",
           "p.send_signal(signum)", "pass",
           (f"{SIGNALS}::test_the_launcher_forwards_sigterm_and_exits_with_the_status_of_its_child",)),
    Mutant("BatchNorm folded without its epsilon", "googlenet_jax/model/folding.py",
           'scale = bn["scale"] / np.sqrt(bn["var"] + BN_EPSILON)', 'scale = bn["scale"] / np.sqrt(bn["var"])',
           ("tests/parity/test_model_parity.py::test_folded_batch_norm_matches_torchvision_in_float64",)),
    # Config fields reaching the path a user runs, and what a run's files carry.
    Mutant("model_info ignores eval_crop_fraction", "googlenet_jax/weights/info.py",
           'input_spec.eval_resize_size(image_size, config["eval_crop_fraction"])',
           "input_spec.eval_resize_size(image_size)",
           ("tests/inference/test_classifier.py::test_a_workdirs_eval_crop_fraction_sets_the_classifiers_resize",
            "tests/commands/test_train.py::test_model_info_holds_the_eval_resize_that_eval_crop_fraction_asks_for")),
    Mutant("train scalars logged at checkpoint steps only", "googlenet_jax/training/trainer.py",
           "if done % config.log_every_steps == 0 or is_last:",
           "if done % config.checkpoint_every_steps == 0 or is_last:",
           ("tests/commands/test_train.py::"
            "test_tensorboard_has_train_scalars_at_every_log_step_and_eval_scalars_at_the_end",)),
    Mutant("final train_loss is the main head's loss", "googlenet_jax/training/trainer.py",
           '"train_loss": host_metrics.get("loss"),', '"train_loss": host_metrics.get("loss_main"),',
           ("tests/commands/test_train.py::"
            "test_final_metrics_report_the_last_steps_training_loss_and_evaluation",)),
    Mutant("older config.json refused on resume", "googlenet_jax/training/trainer.py",
           "        return _field(saved, dotted)\n    except KeyError:",
           "        return _field(saved, dotted)\n    except AttributeError:",
           ("tests/training/test_trainer.py::test_a_workdir_whose_config_predates_a_field_holds_that_fields_default",)),
    Mutant("nan_max_consecutive_skips left at its default", "googlenet_jax/training/trainer.py",
           "nonfinite.NonFiniteGuard(config.nan_policy, config.nan_max_consecutive_skips,",
           "nonfinite.NonFiniteGuard(config.nan_policy, 10,",
           ("tests/commands/test_train_durability.py::"
            "test_the_skip_policy_stops_after_nan_max_consecutive_skips_in_a_row",)),
    Mutant("multi-crop eval takes a workdir's batch", "googlenet_jax/evaluation.py",
           "images = workdir_batch if (crops == 1 and workdir_batch) else",
           "images = workdir_batch if workdir_batch else",
           (f"{EVALUATION}::test_default_batch_size_takes_a_workdirs_eval_batch_for_one_crop_only",)),
    # Options reaching the served model and its input, and what an export's FILE.json carries.
    Mutant("FILE.json std on the 0..1 scale", "googlenet_jax/model/input_spec.py",
           "tuple(255.0 * s for s in IMAGENET_STD)", "IMAGENET_STD",
           ("tests/inference/test_serving.py::test_file_json_mean_and_std_turn_pixels_into_the_models_input",)),
    Mutant("FILE.json normalisation of the variant", "googlenet_jax/inference/serving.py",
           "input_spec.mean_std_255(info.normalization)", "input_spec.mean_std_255(info.variant)",
           ("tests/inference/test_serving.py::test_file_json_mean_and_std_turn_pixels_into_the_models_input",)),
    Mutant("export --dtype ignored", "googlenet_jax/inference/serving.py",
           "loaded.model.clone(aux_logits=False, dtype=jnp.dtype(dtype))", "loaded.model.clone(aux_logits=False)",
           ("tests/inference/test_serving.py::test_bfloat16_artifact_computes_in_bfloat16_as_its_file_json_says",)),
    Mutant("classifier resizes to the default 256/224", "googlenet_jax/inference/images.py",
           "normalization=normalization,\n                                        resize_size=resize_size)",
           "normalization=normalization)",
           ("tests/inference/test_classifier.py::test_a_workdirs_eval_crop_fraction_sets_the_classifiers_resize",)),
    Mutant("train crop ignores the augment area and aspect", "googlenet_jax/data/pipeline.py",
           "image, crop_seed, min_area=augment.min_area, max_area=augment.max_area,\n"
           "            min_aspect=augment.min_aspect, max_aspect=augment.max_aspect)",
           "image, crop_seed)",
           ("tests/data/test_pipeline.py::test_the_augment_configs_area_and_aspect_ranges_bound_the_train_crop",)),
    Mutant("Classifier drops use_average", "googlenet_jax/inference/classifier.py",
           "use_average=use_average, dtype=dtype or jnp.float32)", "dtype=dtype or jnp.float32)",
           ("tests/inference/test_classifier.py::test_use_average_false_serves_a_workdirs_raw_parameters",)),
    # Training numerics on many devices.
    Mutant("gradients summed in bfloat16 by default", "googlenet_jax/training/steps.py",
           "return jax.lax.pmean(grads, axis_name)",
           "return jax.tree.map(lambda g: jax.lax.pmean(g.astype(jnp.bfloat16), axis_name).astype(g.dtype), grads)",
           ("tests/test_parallel.py::test_gradients_of_a_bfloat16_network_are_summed_over_devices_in_float32",)),
    Mutant("a skipped step holds the schedule back", "googlenet_jax/training/steps.py",
           "return jax.tree_util.tree_map_with_path(set_count, opt_state)", "return opt_state",
           ("tests/training/test_nonfinite.py::"
            "test_after_skipped_steps_the_schedule_gives_the_rate_of_the_step_being_taken",)),
    # Start-up: what every command's process loads.
    Mutant("TensorFlow's import loads Keras", "googlenet_jax/commands/common.py",
           "sys.modules.setdefault(_KERAS_LOADED_BY_TENSORFLOW, None)", "pass",
           ("tests/commands/test_common.py::test_tensorflow_and_tfds_load_without_keras",)),
    # The model from its config; blocks described once.
    Mutant("the loader drops the recorded model fields", "googlenet_jax/weights/loader.py",
           "fields = {**info.model, ", "fields = {",
           ("tests/commands/test_model_fields.py",)),
    Mutant("a new model field left out of the run's identity", "googlenet_jax/training/trainer.py",
           "return RUN_IDENTITY + model", "return RUN_IDENTITY + ('model.variant',)",
           ("tests/training/test_trainer.py::test_every_model_field_is_part_of_the_run_but_the_compute_ones",)),
    Mutant("the naive module drops its pool", "googlenet_jax/model/architecture.py",
           '), ("branch1x1", "branch3x3", "branch5x5", "pool"))', '), ("branch1x1", "branch3x3", "branch5x5"))',
           ("tests/model/test_architecture.py::test_summary_counts_the_naive_module_and_shows_the_reduced_one_beside_it",)),
    Mutant("ONNX concatenates a block's outputs in reverse", "googlenet_jax/inference/onnx_export.py",
           "[out[part] for part in block.outputs]", "[out[part] for part in reversed(block.outputs)]",
           ("tests/model/test_architecture.py::test_the_onnx_writer_and_the_stage_names_read_the_naive_block",)),
    Mutant("Inception modules ignore a swapped conv class", "googlenet_jax/model/network.py",
           "module = self.blocks.inception(block, conv, self.forms, name=name)",
           "module = Inception(block, functools.partial(ConvBlock, **conv.keywords), self.forms, name=name)",
           ("tests/model/test_architecture.py::test_a_swapped_conv_block_class_builds_every_convolution",)),
    # BVLC's weights; Table 3's ensembles.
    Mutant("Caffe's conv1 left in BGR order", "googlenet_jax/weights/caffe.py",
           'state_dict["conv1.conv.weight"][:, ::-1]', 'state_dict["conv1.conv.weight"]',
           ("tests/weights/test_caffe.py::test_logits_equal_opencvs_caffe_importer_and_the_torch_port",)),
    Mutant("an ensemble row holds the last model alone", "googlenet_jax/evaluation.py",
           "rows.append(ensemble_row(len(models), count, total / len(models), labels))",
           "rows.append(ensemble_row(len(models), count, probabilities, labels))",
           ("tests/test_evaluation.py::test_an_ensemble_averages_each_models_crop_averaged_softmax",)),
]


def _working_tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(REPO, p))]


def _scratch_copy(destination: str) -> None:
    for path in _working_tree_files():
        target = os.path.join(destination, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO, path), target)


def check_applies(mutant: Mutant) -> str | None:
    """Why the mutant cannot be planted, or None."""
    with open(os.path.join(REPO, mutant.path)) as f:
        count = f.read().count(mutant.old)
    return None if count == 1 else f"{mutant.path}: expected the text once, found it {count} times"


def run(mutant: Mutant, scratch: str) -> tuple[str, float]:
    """Plants the bug in `scratch` (a fresh copy), runs its tests: ("caught" | "NOT CAUGHT" |
    "ERROR ...", seconds). Caught means a test failed (pytest's exit status 1); an import or
    collection error is an error of the check, not a catch."""
    path = os.path.join(scratch, mutant.path)
    with open(path) as f:
        source = f.read()
    with open(path, "w") as f:
        f.write(source.replace(mutant.old, mutant.new))
    start = time.time()
    try:
        # One process (-n 0): a mutant's few tests do not pay for starting two workers.
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0",
                               *mutant.tests], cwd=scratch, capture_output=True, text=True)
    finally:
        with open(path, "w") as f:
            f.write(source)
    outcome = {0: "NOT CAUGHT", 1: "caught"}.get(
        proc.returncode, f"ERROR (pytest exit {proc.returncode}: {proc.stdout.strip().splitlines()[-1:]})")
    return outcome, time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name:48s} {m.path:40s} {' '.join(m.tests)}")
        return 0
    stale = [(m, why) for m in chosen if (why := check_applies(m))]
    for m, why in stale:
        print(f"mutants: error: {m.name!r} no longer applies: {why}", file=sys.stderr)
    if stale:
        return 2
    missed, start = [], time.time()
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        _scratch_copy(scratch)
        for m in chosen:
            outcome, seconds = run(m, scratch)
            print(f"{outcome:10s} {seconds:6.0f}s  {m.name}", flush=True)
            if outcome != "caught":
                missed.append(m.name)
    print(f"{len(chosen) - len(missed)}/{len(chosen)} caught in {time.time() - start:.0f}s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
