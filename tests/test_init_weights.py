"""config.init_weights: fine-tuning a 1000-class torchvision .pth onto a 3-class image folder.

The run is conftest's `finetuned_workdir`; that the weights it loads are the .pth's, bit for
bit, is checked on its frozen stages in tests/test_freeze.py. Here: the classifiers are new,
and bad weights fail before training.
"""
import pytest
from flax import traverse_util

from googlenet_jax import convert
from googlenet_jax.weights import files

import helpers
from helpers import FINETUNE_ARGS, run_command

pytestmark = pytest.mark.slow  # subprocesses and training runs


def _checkpoint(workdir, step=2):
    return files.restore_as_numpy(f"{workdir}/checkpoints/{step}/{files.ITEM_DIR}")


def test_the_classifiers_are_new_for_the_class_count(finetuned_workdir, torchvision_pth):
    workdir, stdout = finetuned_workdir
    source = traverse_util.flatten_dict(
        convert.torchvision_to_flax(helpers.state_dict_numpy(torchvision_pth[1]))["params"])
    params = traverse_util.flatten_dict(_checkpoint(workdir)["params"])
    classifiers = {("fc",), ("aux1", "fc2"), ("aux2", "fc2")}
    for key, value in params.items():
        if key[:-1] in classifiers:
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
