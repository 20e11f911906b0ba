"""`python -m googlenet_jax.predict` end to end: real subprocesses on real photos."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import GoogLeNet_Weights

import helpers
from helpers import run_command

pytestmark = pytest.mark.slow  # subprocesses and training runs
CATEGORIES = GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]


def _predict(*args, check=True):
    return run_command(["-m", "googlenet_jax.predict", *args], check=check)


def test_pth_top5_equals_torchvisions_own_model_and_transform(tmp_path, torchvision_pth):
    path, net = torchvision_pth
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    images = [helpers.photo("rocket"), str(broken), helpers.photo("cat"), helpers.photo("camera")]
    out = tmp_path / "out.json"
    features = tmp_path / "features.npy"
    proc = _predict("--weights", path, "--json", out, "--features", features, "--batch_size", "2",
                    *images, check=False)
    # The unreadable image is named on stderr, the others are still predicted, exit status 2.
    assert proc.returncode == 2
    assert f"predict: error: {broken}: not a readable image" in proc.stderr and "Traceback" not in proc.stderr
    results = json.loads(out.read_text())
    assert [r["image"] for r in results] == images
    assert sorted(results[1]) == ["error", "image"] and "broken.jpg" in results[1]["error"]
    for entry in (results[0], results[2], results[3]):
        with torch.no_grad():
            logits = net(torch.from_numpy(
                helpers.torchvision_eval_input(Image.open(entry["image"]).convert("RGB")).transpose(0, 3, 1, 2).copy()))
        expected = torch.softmax(logits, -1)[0].numpy()
        top5 = np.argsort(-expected)[:5]
        assert [t["index"] for t in entry["top_k"]] == list(top5)
        assert [t["name"] for t in entry["top_k"]] == [CATEGORIES[i] for i in top5]  # torchvision's names
        assert sorted(entry["top_k"][0]) == ["index", "name", "probability"]
        # The printed lines: rank, probability, index, name.
        first = entry["top_k"][0]
        assert f"   1  {first['probability']:.4f}  {first['index']:>5}  {first['name']}" in proc.stdout
    rows = np.load(features)
    assert rows.shape == (4, 1024) and np.isnan(rows[1]).all() and np.isfinite(rows[[0, 2, 3]]).all()


def test_image_folder_workdir_prints_the_folders_class_names(finetuned_workdir, tmp_path):
    workdir, _ = finetuned_workdir
    out = tmp_path / "out.json"
    proc = _predict("--weights", workdir, "--top_k", "3", "--json", out, helpers.photo("coffee"))
    names = {t["name"] for t in json.loads(out.read_text())[0]["top_k"]}
    assert names == {"cat", "coffee", "rocket"}
    for name in names:
        assert name in proc.stdout


def test_bad_weights_and_arguments_fail_in_one_line(tmp_path):
    proc = _predict("--weights", tmp_path / "missing.pth", helpers.photo("cat"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"predict: error: {tmp_path / 'missing.pth'}: no such file or directory; expected a torchvision googlenet "
        ".pth, BVLC's bvlc_googlenet.caffemodel, a training workdir (or its checkpoints/<step> folder), or an "
        "orbax checkpoint from "
        "`python -m googlenet_jax.convert to-flax`")
    proc = _predict("--weights", tmp_path, "--top_k", "0", helpers.photo("cat"), check=False)
    assert proc.returncode == 2 and "--top_k must be at least 1" in proc.stderr
