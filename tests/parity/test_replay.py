"""Training parity with PyTorch: the same run in torch and in ours, step by step (`parity --train_steps`).

The references are torch's own: torchvision's googlenet trained by torch.optim.SGD inside the
tool, and, for the replay file, a second torch loop written here from the file alone. Runs are
small (64x64 or 32x32, a few images per step) and in float64, where two correct trainers agree
to ~1e-10 and a recipe difference shows far above it.
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from googlenet_jax.commands import parity as command
from googlenet_jax.model.blocks import ConvBlock
from googlenet_jax.parity.replay import report as replay_report
from googlenet_jax.parity.replay import run as replay_run
from googlenet_jax.weights import torch_layout

import helpers

# SGD momentum 0.9, weight decay 1e-4 on every parameter and torch's running-variance rule
# (configs/imagenet_torchvision.py, the default), label smoothing 0.1, aux heads, a 5-step
# warmup, then 0.1 x 8 / 256: the float64 target of docs/parity.md.
FLOAT64_RUN = ["--train_steps", "20", "--batch_size", "8", "--image_size", "64", "--dtype", "float64",
               "--config.label_smoothing=0.1", "--config.optimizer.warmup_epochs=0.25"]
EDITED_RUN = ["--train_steps", "3", "--steps_per_epoch", "20", *FLOAT64_RUN[2:]]
# What torch lacks and the tool writes out (LARS, optax's clipping, our Polyak average, Flax's
# running variance), in a short run through the command.
STAND_INS_RUN = ["--train_steps", "3", "--batch_size", "4", "--image_size", "32", "--dtype", "float64",
                 "--config.optimizer.name=lars", "--config.optimizer.trust_coefficient=0.02",
                 "--config.optimizer.nesterov=true", "--config.optimizer.grad_clip_norm=1.0",
                 "--config.optimizer.weight_decay_params=all_but_batchnorm", "--config.ema_decay=0.5",
                 "--config.model.bn_running_var=biased"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def our_side():
    """Our 20 float64 steps, once (its compile dominates): every test below trains only torch."""
    return replay_run.train_our_side(command.parse_args(FLOAT64_RUN))


@pytest.fixture(scope="module")
def our_first_steps(our_side):
    """The first 3 of those steps, on the 20-step run's schedule: the same program, so its compile
    comes from the session's cache (about 10 s), and each edited recipe below replays 3 torch steps
    instead of 20 (about 10 s instead of 25). Every planted difference shows by step 2."""
    return replay_run.train_our_side(command.parse_args(EDITED_RUN))


@pytest.fixture(scope="module")
def float64_run(our_side, tmp_path_factory):
    """(report JSON, paths) of the unedited comparison, written as the command writes them."""
    out = tmp_path_factory.mktemp("train_parity")
    paths = {"npz": out / "run.npz", "png": out / "loss.png"}
    report = replay_run.compare(our_side)
    replay_report.save_run(report, str(paths["npz"]))
    replay_report.plot(report, str(paths["png"]))
    return json.loads(json.dumps(report.to_json())), paths


def edited(side, edit):
    return replay_run.compare(side, edit_recipe=edit)


@pytest.mark.slow
def test_twenty_float64_steps_agree_with_torch_within_1e_8_everywhere(float64_run):
    report, paths = float64_run
    assert report["verdict"] == "pass", report["first_divergence"]
    assert len(report["steps"]) == 20
    assert max(step["rel_error"] for step in report["steps"]) <= 1e-8
    for section in ("parameters_after_first_update", "parameters", "momentum_buffers", "running_statistics",
                    "eval_logits"):
        rows = report[section]
        assert rows and all(row["ok"] and row["rel_error"] <= 1e-8 for row in rows), section
    # Every parameter tensor of torchvision's googlenet (aux heads included) with its momentum
    # buffer, and every BatchNorm's running mean and variance.
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert len(report["parameters"]) == len(report["momentum_buffers"]) == len(list(net.parameters()))
    batchnorms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(report["running_statistics"]) == 2 * len(batchnorms)
    # Parity is not between two frozen models: the weights moved far beyond the tolerance.
    saved = np.load(paths["npz"])
    moved = max(helpers.relative_error(saved[f"final/{row['name']}"], saved[f"init/{row['name']}"])
                for row in report["parameters"])
    assert moved > 1e-4


@pytest.mark.slow
def test_the_learning_rates_given_to_torch_are_the_schedule_computed_by_hand(float64_run):
    report, paths = float64_run
    saved = np.load(paths["npz"])
    peak = 0.1 * 8 / 256
    warmup = 5  # 0.25 of a 20-step epoch: linear from 0, then the step schedule's constant peak
    expected = [peak * t / warmup if t < warmup else peak for t in range(20)]
    np.testing.assert_allclose(saved["learning_rates"], expected, rtol=2e-7, atol=0)
    assert [step["learning_rate"] for step in report["steps"]] == saved["learning_rates"].tolist()
    # optax evaluates these schedules in float32, in a float64 run too: torch is given those values
    # exactly (float64's 0.003125 would be 1.5e-8 off the 0.0031250000465661287 our step applies).
    assert all(np.float32(rate) == rate for rate in saved["learning_rates"])
    assert saved["learning_rates"][-1] != peak


@pytest.mark.slow
def test_the_saved_run_replays_in_a_plain_torch_loop(float64_run):
    """--save_run is enough to rerun the training in torch without our code: a loop written from
    the file alone reproduces our losses and final weights."""
    _, paths = float64_run
    run = np.load(paths["npz"])
    assert run["images"].shape == (20, 8, 64, 64, 3) and run["labels"].shape == (20, 8)
    net = torchvision.models.googlenet(weights=None, num_classes=1000, aux_logits=True, init_weights=False,
                                       transform_input=bool(run["transform_input"]), dropout=0.0, dropout_aux=0.0)
    net.load_state_dict({k[len("init/"):]: torch.from_numpy(run[k]) for k in run.files if k.startswith("init/")})
    net = net.double().train()
    decayed = set(run["decayed"].tolist())
    params = dict(net.named_parameters())
    sgd = torch.optim.SGD([{"params": [p for n, p in params.items() if n in decayed],
                            "weight_decay": float(run["weight_decay"])},
                           {"params": [p for n, p in params.items() if n not in decayed], "weight_decay": 0.0}],
                          lr=0.0, momentum=float(run["momentum"]), nesterov=bool(run["nesterov"]))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=float(run["label_smoothing"]))
    losses = []
    for images, labels, lr in zip(run["images"], run["labels"], run["learning_rates"]):
        out = net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
        target = torch.from_numpy(labels)
        loss = criterion(out.logits, target) + float(run["aux_weight"]) * (
            criterion(out.aux_logits1, target) + criterion(out.aux_logits2, target))
        losses.append(loss.item())
        sgd.zero_grad()
        loss.backward()
        for group in sgd.param_groups:
            group["lr"] = float(lr)
        sgd.step()
    np.testing.assert_allclose(run["jax_losses"], losses, rtol=1e-8)
    final = net.state_dict()
    worst = max(helpers.relative_error(run[f"final/{name}"], final[name].numpy())
                for name in final if not name.endswith("num_batches_tracked"))
    assert worst < 1e-8


@pytest.mark.slow
def test_the_plot_is_written(float64_run):
    from PIL import Image

    _, paths = float64_run
    with Image.open(paths["png"]) as image:
        assert image.size[0] > 300 and image.size[1] > 300


@pytest.mark.slow
def test_weight_decay_left_off_batchnorm_on_one_side_is_named(our_first_steps):
    """Ours decays every parameter (the torchvision config); torch is told to leave BatchNorm's
    alone. After the first update exactly those tensors differ, and the report names them."""
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    batchnorm = {name for name, _ in net.named_parameters() if ".bn." in name}
    report = edited(our_first_steps, lambda recipe: dataclasses.replace(recipe, decayed=recipe.decayed - batchnorm))
    assert not report.ok
    first_update = [row for row in report.rows if row.kind == "parameter after the first update"]
    assert {row.name for row in first_update if not row.ok} == batchnorm
    assert "FAIL" in report.table()


@pytest.mark.slow
def test_a_schedule_one_step_ahead_on_one_side_is_named_at_step_2(our_first_steps):
    def one_step_ahead(recipe):
        rates = recipe.learning_rates
        return dataclasses.replace(recipe, learning_rates=rates[1:] + rates[-1:])

    report = edited(our_first_steps, one_step_ahead)
    assert report.first_divergence.kind == "step loss" and report.first_divergence.name == "step 2"
    assert [row for row in report.rows if row.kind == "step loss"][0].ok  # before any update they agree


@pytest.mark.slow
def test_flaxs_running_variance_rule_on_one_side_is_named(our_first_steps):
    """Ours uses torch's unbiased rule (the torchvision config); torch is given Flax's biased one:
    only the running variances (and so the eval logits) differ, the training itself agrees."""
    report = edited(our_first_steps, lambda recipe: dataclasses.replace(recipe, bn_running_var="biased"))
    assert {row.kind for row in report.rows if not row.ok} == {"running statistic", "eval logits"}
    assert all(row.name.endswith("running_var") for row in report.rows
               if row.kind == "running statistic" and not row.ok)


@pytest.mark.slow
def test_lars_clipping_nesterov_and_the_polyak_average_map_onto_torch(tmp_path, capsys):
    """The stand-ins for what torch lacks follow ours to float64 rounding, through the command,
    on photos through the train-time preprocessing (inception crop, flip)."""
    out = tmp_path / "report.json"
    images = helpers.photos("cat", "rocket", "camera")  # through the train-time preprocessing
    assert command.main([*STAND_INS_RUN, "--images", *images, "--json", str(out)]) == 0, \
        capsys.readouterr().out[-3000:]
    report = json.loads(out.read_text())
    assert report["polyak_average"] and report["momentum_buffers"] and report["parameters_after_first_update"]
    assert all(row["ok"] for row in report["polyak_average"] + report["momentum_buffers"])
    assert "lars" in report["settings"]["recipe"] and "clipping" in report["settings"]["recipe"]
    assert "train-time preprocessing" in report["settings"]["inputs"]
    printed = capsys.readouterr().out
    assert "training loss of each step" in printed and "verdict: PASS" in printed


def test_a_field_torch_cannot_follow_is_refused_in_one_line(capsys):
    assert command.main(["--train_steps", "2", "--config.freeze_up_to=inception3a"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "freeze_up_to" in err


@pytest.mark.parametrize("args", [["--save_run", "x.npz"], ["--config.label_smoothing=0.1"],
                                  ["--train_steps", "2", "--grads"], ["--train_steps", "0"],
                                  ["--train_steps", "2", "--random", "3", "--batch_size", "4"]])
def test_training_flags_are_checked(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        command.parse_args(args)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()[-1]) > 0


@pytest.mark.parametrize("devices", [1, 2])
def test_unbiased_running_variance_is_torchs_rule(devices):
    """ConvBlock's bn_running_var="unbiased" against torch.nn.BatchNorm2d on the same values, on
    one device and with the batch split over two (the count is the global one)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 5, 3)) * 2 + 1
    block = ConvBlock(features=6, kernel=1, bn_running_var="unbiased", dtype=jnp.float64,
                      bn_axis_name="batch" if devices > 1 else None)
    with jax.enable_x64(True):
        variables = jax.tree.map(lambda a: np.asarray(a, np.float64), block.init(jax.random.PRNGKey(0), x, train=False))
        variables["batch_stats"]["bn"]["var"] = rng.uniform(0.5, 2.0, 6)

        def step(v, x):
            return block.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]["bn"]

        if devices == 1:
            stats = step(variables, x)
        else:
            stats = jax.tree.map(lambda a: a[0], jax.pmap(step, axis_name="batch", in_axes=(None, 0))(
                variables, x.reshape(2, 2, 5, 5, 3)))
    kernel = variables["params"]["conv"]["kernel"]
    y = torch.from_numpy(np.einsum("nhwc,cd->ndhw", x, kernel[0, 0]))
    bn = torch.nn.BatchNorm2d(6, eps=1e-3, momentum=0.1).double().train()
    bn.running_var.copy_(torch.from_numpy(variables["batch_stats"]["bn"]["var"]))
    bn(y)
    np.testing.assert_allclose(stats["var"], bn.running_var.numpy(), rtol=1e-13)
    np.testing.assert_allclose(stats["mean"], bn.running_mean.numpy(), rtol=1e-13, atol=1e-15)


def test_weight_decay_params_pick_the_tensors_torchvisions_reference_flags_pick():
    """Our masks, read in torch's names, against the rules written on torch's own parameters:
    "all" is model.parameters(), "all_but_batchnorm" the reference's --norm-weight-decay 0 (no
    BatchNorm weight or bias), "kernels" the tensors of rank > 1."""
    net = helpers.torch_reference("torchvision", aux_logits=True, seed=0)
    variables = torch_layout.torchvision_to_flax(helpers.state_dict_numpy(net), variant="torchvision")
    names = replay_run._names(variables)
    torch_params = dict(net.named_parameters())
    assert set(names["all"]) == set(torch_params)
    assert set(names["all_but_batchnorm"]) == {n for n, p in torch_params.items()
                                               if not isinstance(_owner(net, n), torch.nn.BatchNorm2d)}
    assert set(names["kernels"]) == {n for n, p in torch_params.items() if p.ndim > 1}
    assert set(names["kernels"]) < set(names["all_but_batchnorm"]) < set(names["all"])  # fc biases between


def _owner(net, parameter_name):
    return net.get_submodule(parameter_name.rsplit(".", 1)[0])
