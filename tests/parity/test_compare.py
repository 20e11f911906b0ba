"""googlenet_jax.parity: the stage-by-stage comparison with PyTorch, as a tool for users and forks.

Real torchvision and the torch.nn Caffe port on one side, our model on the other: the tool
passes on correct models, names the first broken stage of a broken one, compares train mode
(BatchNorm running statistics) and gradients, and fails with clear errors on bad names and
files. Small inputs (48x48, batch 2) keep it fast; models and compiled functions are shared.
"""
import copy
import json
import os
from collections import Counter

import jax
import numpy as np
import pytest
import torch

from googlenet_jax import GoogLeNet, parity

# The public name: no module of the parity package is called `compare`, so `parity.compare` is
# always the function (see test_the_package_attribute_compare_is_always_the_function).
from googlenet_jax.parity import compare
from googlenet_jax.weights.torch_layout import torchvision_to_flax

import helpers

SIZE, BATCH = 48, 2  # every Inception map at least 3x3, so a changed pool window shows


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    """{variant: (our module, variables, torch reference)}; the same models the command builds
    for random weights, so the command's runs reuse these compiled functions."""
    torchvision_net = helpers.torch_reference("torchvision", transform_input=True, seed=1)
    # The paper variant's aux heads need 224x224 input; at 48x48 it is compared without them.
    paper_net = helpers.torch_reference("paper", aux_logits=False, seed=2)
    return {
        "torchvision": (GoogLeNet(transform_input=True),
                        torchvision_to_flax(helpers.state_dict_numpy(torchvision_net)), torchvision_net),
        "paper": (GoogLeNet(variant="paper", aux_logits=False),
                  torchvision_to_flax(helpers.state_dict_numpy(paper_net), variant="paper"), paper_net),
    }


@pytest.fixture(scope="module")
def inputs():
    return helpers.images(BATCH, SIZE, SIZE, seed=3)


def _eval_stages(variant):
    return [name for name in parity.DEFAULT_STAGES[variant] if not name.startswith("aux")]


# torchvision in float64: the fork test and the train-mode test below (each compile costs seconds).
@pytest.mark.parametrize("variant,dtype", [("torchvision", "float32"), ("paper", "float32"),
                                           ("paper", "float64")])
def test_correct_models_pass_at_every_stage(models, inputs, variant, dtype):
    module, variables, net = models[variant]
    report = compare(module, variables, net, inputs, dtype=dtype)
    assert report.ok and report.first_divergence is None, report.table()
    # Every stage in network order; the aux heads run in train mode only.
    assert [row.name for row in report.rows] == _eval_stages(variant)
    assert {row.tolerance for row in report.rows} == {parity.TOLERANCES[dtype]["eval"]}
    assert report.table().endswith("verdict: PASS (every row within tolerance)")


def test_a_changed_pool_window_in_torch_is_named_as_the_first_divergence(models, inputs):
    module, variables, net = models["torchvision"]
    broken = copy.deepcopy(net)
    broken.inception4b.branch4[0] = torch.nn.MaxPool2d(5, stride=1, padding=2, ceil_mode=True)  # same shape
    report = compare(module, variables, broken, inputs)
    assert not report.ok
    assert report.first_divergence.name == "inception4b"
    names = [row.name for row in report.rows]
    assert all(row.ok for row in report.rows[:names.index("inception4b")])
    assert "inception4b" in report.table().split("<- first divergence")[0].splitlines()[-1]


def test_a_transposed_kernel_in_our_variables_is_named_as_the_first_divergence(models, inputs):
    module, variables, net = models["torchvision"]
    broken = jax.tree.map(np.array, variables)  # a deep copy
    conv = broken["params"]["inception4c"]["branch3x3"]["conv"]
    conv["kernel"] = np.ascontiguousarray(conv["kernel"].transpose(1, 0, 2, 3))  # H and W swapped
    report = compare(module, broken, net, inputs)
    assert report.first_divergence.name == "inception4c"
    assert report.to_json()["first_divergence"] == "inception4c"
    assert report.to_json()["verdict"] == "fail"


def test_train_mode_running_statistics_and_gradients_agree_in_float64(models, inputs):
    module, variables, net = models["torchvision"]
    report = compare(module, variables, net, inputs, grads=True, dtype="float64")
    assert report.ok, report.table()
    kinds = Counter(row.kind for row in report.rows)
    # 20 stages (aux heads included), 59 BatchNorms x (mean, var), the loss, every parameter.
    assert kinds == {"output": 20, "running statistic": 118, "loss": 1,
                     "gradient": len(list(net.parameters()))}
    assert max(row.rel_error for row in report.rows) < 1e-11  # float64: exact up to rounding
    grads = [row.name for row in report.rows if row.kind == "gradient"]
    assert grads[:2] == ["conv1.conv.weight", "conv1.bn.weight"] and "aux1.fc1.weight" in grads
    notes = " ".join(report.notes)
    assert "biased batch variance" in notes and "random fixed labels" in notes
    # The caller's torch model is left as it was: eval-free copies ran the training step.
    assert net.conv1.bn.num_batches_tracked.item() == 0


def test_a_fork_maps_an_extra_stage_by_flax_path_and_torch_module_name(models, inputs):
    module, variables, net = models["torchvision"]
    # Nested blocks: a 3x3 branch, and a 1x1 branch that the module runs merged with the others.
    nested = {"inception4a/branch3x3": "inception4a.branch2.1",
              "inception4a/branch1x1": "inception4a.branch1"}
    stages = parity.insert_after(parity.DEFAULT_STAGES["torchvision"], "inception4a", nested)
    report = compare(module, variables, net, inputs, stages=stages, dtype="float64")
    assert report.ok, report.table()
    names = [row.name for row in report.rows]
    assert names == _eval_stages("torchvision")[:names.index("inception4a") + 1] + list(nested) + \
        _eval_stages("torchvision")[names.index("inception4a") + 1:]
    assert report.rows[names.index("inception4a/branch3x3")].shape == (BATCH, 3, 3, 208)
    assert report.rows[names.index("inception4a/branch1x1")].shape == (BATCH, 3, 3, 192)


def test_a_torch_module_name_that_does_not_exist_is_a_clear_error(models, inputs):
    module, variables, net = models["torchvision"]
    with pytest.raises(ValueError, match=r"stage 'pool1': the torch model has no module 'pool1'; "
                                         r"did you mean .*maxpool1"):
        compare(module, variables, net, inputs, stages={"conv1": "conv1", "pool1": "pool1"})


def test_a_flax_stage_that_does_not_exist_is_a_clear_error(models, inputs):
    module, variables, net = models["torchvision"]
    with pytest.raises(ValueError, match=r"stage 'inception4x': the Flax model has no stage 'inception4x'; "
                                         r"did you mean .*inception4a"):
        compare(module, variables, net, inputs,
                       stages={"conv1": "conv1", "inception4x": "inception4a"})


def test_the_package_attribute_compare_is_always_the_function():
    import googlenet_jax.parity.layers.run  # noqa: F401  (the command's runner imports compare's module)

    assert parity.compare is compare and callable(parity.compare)


# ----------------------------------------------------------------------------- the command


def test_command_prints_the_table_writes_json_and_exits_0(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert parity.main(["--random", str(BATCH), "--image_size", str(SIZE), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "against torchvision.models.googlenet" in printed and "verdict: PASS" in printed
    report = json.loads(out.read_text())
    assert [stage["name"] for stage in report["stages"]] == _eval_stages("torchvision")
    assert set(report["stages"][0]) == {"name", "shape", "rel_error", "max_abs_error", "tolerance", "ok"}
    assert report["stages"][0]["shape"] == [BATCH, SIZE // 2, SIZE // 2, 64]
    assert report["first_divergence"] is None and report["verdict"] == "pass"


def test_command_exits_1_when_a_stage_is_over_tolerance(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--random", str(BATCH), "--image_size", str(SIZE), "--tolerance", "1e-12", "--json", str(out)]
    assert parity.main(argv) == 1
    report = json.loads(out.read_text())
    assert report["verdict"] == "fail" and report["first_divergence"] in _eval_stages("torchvision")
    assert f"first divergence: stage {report['first_divergence']}" in capsys.readouterr().out


def test_command_on_photos_with_a_paper_pth_without_aux_heads(models, tmp_path, capsys):
    pth = tmp_path / "paper.pth"
    torch.save(models["paper"][2].state_dict(), pth)  # 344-key-style file: no aux1.* / aux2.*
    argv = ["--weights", str(pth), "--images", *helpers.photos("rocket", "cat"), "--image_size", str(SIZE)]
    assert parity.main(argv) == 0
    printed = capsys.readouterr().out
    assert "paper variant" in printed and "2 image(s), shorter side resized to 55" in printed
    assert "lrn1" in printed and "aux1" not in printed


@pytest.mark.parametrize("content,message", [
    (b"not a torch file", "not a readable PyTorch file"),
    (None, "fc.weight has shape (1000, 512), expected (1000, 1024)"),
])
def test_command_rejects_a_bad_weights_file_in_one_line_with_exit_2(models, tmp_path, capsys, content,
                                                                     message):
    pth = tmp_path / "bad.pth"
    if content is None:  # a readable state_dict with one tensor of the wrong shape
        state_dict = models["torchvision"][2].state_dict()
        torch.save({**state_dict, "fc.weight": torch.zeros(1000, 512)}, pth)
    else:
        pth.write_bytes(content)
    assert parity.main(["--weights", str(pth), "--random", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("parity: error: ") and message in error[0]


def _run(args, env=None):
    return helpers.run_command(["-m", "googlenet_jax.parity", *args], check=False, timeout=120, env=env)


@pytest.mark.slow
def test_command_missing_weights_file_is_one_line_with_exit_2(tmp_path):
    missing = tmp_path / "nowhere.pth"
    proc = _run(["--weights", str(missing)])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"parity: error: --weights {missing}: no such file"]


@pytest.mark.slow
def test_command_without_torch_says_what_to_install(tmp_path):
    blocked = tmp_path / "torch"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), helpers.REPO])}
    assert _run(["--help"], env).returncode == 0  # --help needs neither torch nor TensorFlow
    proc = _run(["--random", "1", "--image_size", "32"], env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "parity: error: comparing with PyTorch needs torch and torchvision (No module named torch): "
        "pip install torch==2.14.1 torchvision==0.29.1"]
