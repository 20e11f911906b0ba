"""config.init_weights: fine-tuning a 1000-class torchvision .pth onto a 3-class image folder.

The run is conftest's `finetuned_workdir`; that the weights it loads are the .pth's, bit for
bit, is checked on its frozen stages in tests/commands/test_train_freeze.py. Here: the classifiers are new,
bad weights fail before training, and a workdir or a converted orbax checkpoint starts a run
from exactly its arrays.
"""
import jax
import numpy as np
import pytest
from flax import traverse_util

from googlenet_jax.commands import convert
from googlenet_jax.model.network import GoogLeNet
from googlenet_jax.training import init_weights, optim
from googlenet_jax.training.train_state import create_train_state
from googlenet_jax.weights import files, torch_layout

import helpers
from helpers import FINETUNE_ARGS, run_command

pytestmark = pytest.mark.slow  # subprocesses and training runs

CLASSIFIERS = {("fc",), ("aux1", "fc2"), ("aux2", "fc2")}  # their shape follows the class count


def _checkpoint(workdir, step=2):
    return files.restore_as_numpy(f"{workdir}/checkpoints/{step}/{files.ITEM_DIR}")


def test_the_classifiers_are_new_for_the_class_count(finetuned_workdir, torchvision_pth):
    workdir, stdout = finetuned_workdir
    source = traverse_util.flatten_dict(
        torch_layout.torchvision_to_flax(helpers.state_dict_numpy(torchvision_pth[1]))["params"])
    params = traverse_util.flatten_dict(_checkpoint(workdir)["params"])
    for key, value in params.items():
        if key[:-1] in CLASSIFIERS:
            assert value.shape[-1] == 3, key
        else:
            assert value.shape == source[key].shape, key
    assert params[("fc", "kernel")].shape == (1024, 3)
    assert "init_weights: freshly initialised for 3 classes instead of 1000: aux1/fc2, aux2/fc2, fc" in stdout


def test_bad_init_weights_fail_in_one_line_before_training(tmp_path, photo_folder):
    proc = run_command(["train.py", *FINETUNE_ARGS, f"--config.data_dir={photo_folder}",
                        f"--config.init_weights={tmp_path / 'nothing.pth'}", "--workdir", tmp_path / "w"],
                       check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: config.init_weights:") and "nothing.pth" in last
    assert not (tmp_path / "w").exists()


def test_weights_of_the_other_variant_are_refused(tmp_path, photo_folder):
    import torch
    torch.save(helpers.torch_reference("paper", aux_logits=False).state_dict(), tmp_path / "paper.pth")
    proc = run_command(["train.py", *FINETUNE_ARGS, f"--config.data_dir={photo_folder}",
                        f"--config.init_weights={tmp_path / 'paper.pth'}", "--workdir", tmp_path / "w"],
                       check=False)
    assert proc.stderr.strip().splitlines()[-1] == (
        f"train.py: error: config.init_weights={tmp_path / 'paper.pth'} holds paper-variant weights "
        "but config.model.variant='torchvision'")


# ----------------------------------------------------------------------------- the starting weights
# What train.py does with config.init_weights (trainer.py): init_weights.load, then
# init_weights.apply to the fresh state. The expected arrays are read with orbax directly.


def _read_with_orbax(directory):
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(str(directory))


def _start_from(source):
    """The state a 3-class torchvision-variant run starts from with init_weights=source."""
    config = helpers.optimizer_config(learning_rate=0.1)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=2))
    model = GoogLeNet(num_classes=3, variant="torchvision", aux_logits=True)
    fresh = create_train_state(model, tx, seed=0, image_size=32, use_ema=True)
    state, _ = init_weights.apply(fresh, init_weights.load(str(source), variant="torchvision"), tx=tx, use_ema=True)
    return fresh, state


def _assert_started_from(state, fresh, params, batch_stats, *, new_classifiers):
    flat, expected = traverse_util.flatten_dict(state.params), traverse_util.flatten_dict(params)
    classifier = [k for k in flat if k[:-1] in CLASSIFIERS]
    copied = [k for k in flat if not (new_classifiers and k in classifier)]
    assert len(copied) > 100
    for key in copied:
        np.testing.assert_array_equal(flat[key], expected[key], err_msg=str(key))
    if new_classifiers:  # the fresh model's own initialisation, for 3 classes
        fresh_flat = traverse_util.flatten_dict(fresh.params)
        for key in classifier:
            np.testing.assert_array_equal(flat[key], fresh_flat[key], err_msg=str(key))
    stats, expected_stats = (traverse_util.flatten_dict(tree) for tree in (state.batch_stats, batch_stats))
    assert len(stats) > 100 and stats.keys() == expected_stats.keys()
    for key in stats:
        np.testing.assert_array_equal(stats[key], expected_stats[key], err_msg=str(key))
    # The average starts at the weights; step and momentum start afresh.
    jax.tree_util.tree_map(np.testing.assert_array_equal, state.ema_params, state.params)
    assert int(state.step) == 0
    assert all(not np.any(leaf) for leaf in jax.tree_util.tree_leaves(state.opt_state) if np.ndim(leaf))


def test_a_workdir_starts_the_run_from_its_polyak_average(finetuned_workdir):
    """A workdir gives the weights it evaluates with: the average of its newest checkpoint
    (which differs from its raw parameters, so the test tells the two apart)."""
    source, _ = finetuned_workdir
    expected = _read_with_orbax(f"{source}/checkpoints/2/{files.ITEM_DIR}")
    assert not np.array_equal(expected["ema_params"]["fc"]["kernel"], expected["params"]["fc"]["kernel"])
    fresh, state = _start_from(source)
    _assert_started_from(state, fresh, expected["ema_params"], expected["batch_stats"], new_classifiers=False)


def test_a_converted_orbax_checkpoint_starts_the_run_but_for_the_classifiers(torchvision_pth, tmp_path):
    converted = tmp_path / "converted"
    assert convert.main(["to-flax", torchvision_pth[0], str(converted)]) == 0
    expected = _read_with_orbax(converted)
    fresh, state = _start_from(converted)
    _assert_started_from(state, fresh, expected["params"], expected["batch_stats"], new_classifiers=True)
    assert state.params["fc"]["kernel"].shape == (1024, 3)  # 1000 classes in the checkpoint
