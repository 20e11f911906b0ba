"""googlenet_jax.load on every weights source, against the arrays each source was made from."""
import json
import os

import numpy as np
import pytest
import torch
from flax import traverse_util

import googlenet_jax
from googlenet_jax.commands import convert
from googlenet_jax.training import checkpointing
from googlenet_jax.training.train_state import TrainState
from googlenet_jax.weights import WeightsError, files, torch_layout

import helpers


def _flat(tree):
    return traverse_util.flatten_dict(dict(tree))


def _assert_same_arrays(actual, expected):
    a, b = _flat(actual), _flat(expected)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg="/".join(key))


def test_torchvision_pth_loads_as_torchvisions_pretrained_builder_sets_it(torchvision_pth):
    path, net = torchvision_pth
    loaded = googlenet_jax.load(path)
    info = loaded.info
    assert (info.variant, info.num_classes, info.source) == ("torchvision", 1000, "torchvision_pth")
    assert info.transform_input and loaded.model.transform_input
    assert (info.image_size, info.resize_size, info.normalization) == (224, 256, "torchvision")
    assert info.class_names[:2] == ("tench", "goldfish") and info.aux_logits
    _assert_same_arrays(loaded.variables["params"],
                        torch_layout.torchvision_to_flax(helpers.state_dict_numpy(net))["params"])


def test_transform_input_can_be_turned_off(torchvision_pth):
    loaded = googlenet_jax.load(torchvision_pth[0], transform_input=False)
    assert not loaded.info.transform_input and not loaded.model.transform_input


def test_pth_without_aux_heads_and_paper_pth(tmp_path):
    plain = tmp_path / "noaux.pth"
    torch.save(helpers.torch_reference("torchvision", aux_logits=False, num_classes=10).state_dict(), plain)
    loaded = googlenet_jax.load(plain)
    assert not loaded.info.aux_logits and "aux1" not in loaded.variables["params"]
    assert loaded.info.class_names == tuple(f"class_{i}" for i in range(10))

    paper = tmp_path / "paper.pth"
    torch.save(helpers.torch_reference("paper", aux_logits=False).state_dict(), paper)
    info = googlenet_jax.load(paper).info
    assert (info.variant, info.normalization, info.transform_input) == ("paper", "paper", False)
    assert "batch_stats" not in googlenet_jax.load(paper).variables


def test_converted_orbax_checkpoint_carries_its_model_info(tmp_path, torchvision_pth):
    out = tmp_path / "converted"
    assert convert.main(["to-flax", torchvision_pth[0], str(out)]) == 0
    assert json.loads((out / "model_info.json").read_text())["class_names"][0] == "tench"
    loaded = googlenet_jax.load(out)
    assert loaded.info.source == "orbax" and loaded.info.transform_input
    _assert_same_arrays(loaded.variables["params"],
                        googlenet_jax.load(torchvision_pth[0]).variables["params"])


def _write_workdir(root, *, ema: bool):
    """A workdir as train.py leaves it, written through the trainer's own Checkpointer, with
    raw and averaged parameters that differ."""
    from googlenet_jax.configs import demo

    config = demo.get_config()
    config.ema_decay = 0.9 if ema else 0.0
    os.makedirs(root)
    (root / "config.json").write_text(config.to_json())
    net = helpers.torch_reference("torchvision", num_classes=10)
    variables = torch_layout.torchvision_to_flax(helpers.state_dict_numpy(net))
    averaged = {k: v * 0.5 for k, v in _flat(variables["params"]).items()}
    state = TrainState(step=np.int32(7), params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state={}, ema_params=traverse_util.unflatten_dict(averaged) if ema else {},
                       rng=np.zeros(2, np.uint32))
    saver = checkpointing.Checkpointer(root / files.CHECKPOINT_DIR, every_steps=1, keep=3)
    saver.save(7, state)
    saver.wait()
    saver.close()
    return variables, traverse_util.unflatten_dict(averaged)


def test_workdir_loads_the_polyak_average_when_the_run_kept_one(tmp_path):
    variables, averaged = _write_workdir(tmp_path / "run", ema=True)
    loaded = googlenet_jax.load(tmp_path / "run")
    assert loaded.info.averaged and loaded.info.step == 7 and loaded.info.source == "workdir"
    _assert_same_arrays(loaded.variables["params"], averaged)
    _assert_same_arrays(loaded.variables["batch_stats"], variables["batch_stats"])
    raw = googlenet_jax.load(tmp_path / "run", use_average=False)
    assert not raw.info.averaged
    _assert_same_arrays(raw.variables["params"], variables["params"])


def test_workdir_step_folders_and_checkpoints_folder_load(tmp_path):
    variables, _ = _write_workdir(tmp_path / "run", ema=False)
    step = tmp_path / "run" / "checkpoints" / "7"
    for path in (tmp_path / "run" / "checkpoints", step, step / "default"):
        loaded = googlenet_jax.load(path)
        assert loaded.info.step == 7 and not loaded.info.averaged
        _assert_same_arrays(loaded.variables["params"], variables["params"])
    # No model_info.json (a workdir from before it existed): names come from the dataset if
    # it is on disk, else class_<i>; either way one per class.
    assert len(googlenet_jax.load(tmp_path / "run").info.class_names) == 10


@pytest.mark.slow
def test_finetuned_workdir_knows_its_image_folder_class_names(finetuned_workdir):
    loaded = googlenet_jax.load(finetuned_workdir[0])
    assert loaded.info.class_names == ("cat", "coffee", "rocket")
    assert loaded.info.dataset == "image_folder" and loaded.info.image_size == 32


# ----------------------------------------------------------------------------- bad input


def _error(path, **kwargs) -> str:
    with pytest.raises(WeightsError) as error:
        googlenet_jax.load(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    assert "no such file or directory" in _error(tmp_path / "nothing.pth")


def test_unrecognised_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    message = _error(text)
    assert str(text) in message and "not a recognised weights file" in message and ".pth" in message


def test_truncated_pth(tmp_path, torchvision_pth):
    data = open(torchvision_pth[0], "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    message = _error(cut)
    assert str(cut) in message and "not a readable PyTorch file" in message


def test_pth_of_another_network(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, other)
    assert "not a googlenet state_dict" in _error(other)


def test_empty_folder_and_workdir_without_checkpoints(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "none of" in _error(tmp_path / "empty")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({}))
    assert "without checkpoints" in _error(tmp_path / "run")


def test_damaged_checkpoint_names_the_step_folder(tmp_path):
    _write_workdir(tmp_path / "run", ema=False)
    step = tmp_path / "run" / "checkpoints" / "7"
    for root, _, names in os.walk(step):
        for name in names:
            if "ocdbt" in root or name.endswith(".ocdbt") or name == "manifest.ocdbt":
                open(os.path.join(root, name), "wb").close()  # truncate the array data
    message = _error(tmp_path / "run")
    assert str(step) in message and "cannot be read" in message


def test_weights_of_the_wrong_shape_are_named(tmp_path):
    variables = torch_layout.torchvision_to_flax(helpers.state_dict_numpy(
        helpers.torch_reference("torchvision", aux_logits=False)))
    variables["params"]["conv2"]["conv"]["kernel"] = np.zeros((1, 1, 64, 32), np.float32)
    files.save_variables(str(tmp_path / "bad"), variables)
    message = _error(tmp_path / "bad")
    assert "conv2/conv/kernel has shape (1, 1, 64, 32), expected (1, 1, 64, 64)" in message
