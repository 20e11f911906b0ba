"""What a multi-crop evaluation computes, written out by hand in numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from googlenet_jax import evaluation

import helpers
from helpers import softmax

CLASSES, SIZE = 5, 4


def test_multi_crop_logits_are_the_log_of_the_mean_softmax_over_crops():
    model = helpers.Linear(CLASSES)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
    rng = np.random.RandomState(1)
    images = (3 * rng.randn(2, 10, SIZE, SIZE, 3)).astype(np.float32)  # 10 crops of 2 images
    w = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
    b = np.asarray(variables["params"]["fc"]["bias"], np.float64)
    probs = softmax(images.reshape(20, -1).astype(np.float64) @ w + b).reshape(2, 10, CLASSES)
    expected = probs.mean(axis=1)

    averaged = evaluation.crop_averaged_logits(model, variables, jnp.asarray(images))
    np.testing.assert_allclose(np.exp(averaged), expected, rtol=1e-5)
    # Averaging logits instead would predict another distribution (and here another class).
    mean_logit_probs = softmax((images.reshape(20, -1) @ w + b).reshape(2, 10, CLASSES).mean(1))
    assert np.abs(mean_logit_probs - expected).max() > 1e-2


def test_default_batch_size_takes_a_workdirs_eval_batch_for_one_crop_only():
    """1 crop: the workdir's eval_batch_size (the trainer's own batches), else 256 images;
    10 and 144 crops: about 256 views per step whatever the workdir says (its batch of 40 images
    would be 5,760 views at 144 crops); always rounded up to a multiple of the devices."""
    assert evaluation.default_batch_size(1, 8, 40) == 40
    assert evaluation.default_batch_size(1, 8, 12) == 16  # 12 rounded up to 2 x 8 devices
    assert evaluation.default_batch_size(1, 8, None) == 256
    assert evaluation.default_batch_size(10, 8, 40) == 32  # 256 // 10 = 25 images, rounded up to 32
    assert evaluation.default_batch_size(144, 8, 40) == 8  # 256 // 144 = 1 image, rounded up to 8
    assert evaluation.default_batch_size(144, 1, 40) == 1


def _orbax_weights(path, seed: int, info) -> str:
    """A tiny network's fresh weights (seed) as a converted orbax checkpoint with `info`."""
    from googlenet_jax.model.network import GoogLeNet
    from googlenet_jax.weights import files, write_model_info

    model = GoogLeNet(num_classes=info.num_classes, variant="tiny", aux_logits=False)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, info.image_size, info.image_size, 3)), train=False)
    # BatchNorm statistics away from 0 / 1, so that folding them in matters.
    variables = {"params": variables["params"], "batch_stats": jax.tree.map(
        lambda x: x + 0.1 * jax.random.uniform(jax.random.key(seed + 100), x.shape), variables["batch_stats"])}
    files.save_variables(str(path), jax.device_get(variables))
    write_model_info(str(path), info)
    return str(path)


def test_an_ensemble_averages_each_models_crop_averaged_softmax(photo_folder, tmp_path, capsys):
    """Table 3's protocol over two models of the tiny network (a converted orbax checkpoint each),
    recomputed here in numpy from each model's logits on each crop of the split."""
    import json

    import googlenet_jax
    from googlenet_jax import data
    from googlenet_jax.commands import evaluate
    from googlenet_jax.weights import ModelInfo

    info = ModelInfo(variant="tiny", num_classes=3, class_names=helpers.FOLDER_CLASSES, image_size=32,
                     resize_size=36, dataset="image_folder", data_dir=photo_folder, eval_split="test")
    paths = [_orbax_weights(tmp_path / f"model{seed}", seed, info) for seed in (0, 1)]
    out = tmp_path / "ensemble.json"
    assert evaluate.main(["--weights", paths[0], "--weights", paths[1], "--crops", "1,10", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {(row["models"], row["crops"]): row for row in report["ensemble"]}
    assert sorted(rows) == [(1, 1), (1, 10), (2, 1), (2, 10)]

    for crops in (1, 10):
        per_model = []
        for path in paths:
            loaded = googlenet_jax.load(path)
            probabilities, labels = [], []
            for batch in data.eval_batches(dataset="image_folder", data_dir=photo_folder, split="test",
                                           global_batch_size=8, image_size=32, normalization="torchvision",
                                           crops=crops, resize_size=36):
                images = batch["image"].reshape((-1, 32, 32, 3))
                logits = np.asarray(loaded.model.apply(loaded.variables, images, train=False), np.float64)
                probs = softmax(logits).reshape(len(batch["label"]), crops, 3).mean(axis=1)
                probabilities.append(probs[batch["mask"]])
                labels.append(batch["label"][batch["mask"]])
            per_model.append(np.concatenate(probabilities))
        labels = np.concatenate(labels)
        for models, probs in ((1, per_model[0]), (2, (per_model[0] + per_model[1]) / 2)):
            row = rows[(models, crops)]
            assert (row["cost"], row["count"]) == (models * crops, 12)
            assert row["top1"] == np.mean(probs.argmax(-1) == labels), (models, crops)
            assert row["top5"] == 1.0  # 3 classes
            assert row["loss"] == pytest.approx(-np.log(probs[np.arange(12), labels]).mean(), rel=1e-5)
        # "crops" holds the first model's figures.
        assert report["crops"][str(crops)] == {k: rows[(1, crops)][k] for k in ("top1", "top5", "loss", "count")}
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split()[:3] == ["models", "crops", "cost"]
    assert [line.split()[:3] for line in printed[2:6]] == [["1", "1", "1"], ["2", "1", "2"], ["1", "10", "10"],
                                                           ["2", "10", "20"]]

    other = ModelInfo(**{**info.__dict__, "class_names": ("a", "b", "c")})
    mismatched = _orbax_weights(tmp_path / "other", 2, other)
    assert evaluate.main(["--weights", paths[0], "--weights", mismatched]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{mismatched}: its 3 classes are not those of {paths[0]}" in err[0]
