"""A field added to the network reaches every tool through config.model alone.

`width_multiplier` was added with a change to googlenet_jax/model/network.py (the field and what
it does), configs/default.py (its default) and this test, nothing else: a run with it trains and
saves, and its workdir loads, predicts, exports and summarises the widened network.
"""
import json

import jax
import numpy as np
import pytest
from jax import export as jax_export

import googlenet_jax
from googlenet_jax.commands import export, predict, summary
from googlenet_jax.inference import images as images_lib

import helpers
from helpers import DIGITS_RUN, run_command

pytestmark = pytest.mark.slow  # a train.py run
STEPS = 2


def test_a_new_model_field_trains_loads_predicts_exports_and_summarises(tmp_path, digits_data_dir, jax_cache):
    workdir = tmp_path / "run"
    run = [arg for arg in DIGITS_RUN if not arg.startswith("--config.num_train_steps")]
    run_command(["train.py", *run, f"--config.num_train_steps={STEPS}", "--config.model.width_multiplier=0.5",
                 f"--config.data_dir={digits_data_dir}", "--workdir", str(workdir)], cache_dir=jax_cache)
    assert json.loads((workdir / "model_info.json").read_text())["model"]["width_multiplier"] == 0.5

    loaded = googlenet_jax.load(workdir)
    assert (loaded.model.width_multiplier, loaded.info.step) == (0.5, STEPS)
    params = loaded.variables["params"]
    # The tiny network's widths (conv1 8, inception4a's branches 8/8/8/4/8/8), halved.
    assert params["conv1"]["conv"]["kernel"].shape == (7, 7, 3, 4)
    assert params["inception4a"]["branch5x5_reduce"]["conv"]["kernel"].shape[-1] == 2

    image = helpers.photo("cat")
    batch = images_lib.preprocess_images([image], loaded.info)
    expected = np.asarray(jax.nn.softmax(loaded.model.apply(loaded.variables, batch, train=False), -1))[0]

    out = tmp_path / "predict.json"
    assert predict.main(["--weights", str(workdir), "--json", str(out), "--top_k", "3", image]) == 0
    top = json.loads(out.read_text())[0]["top_k"]
    np.testing.assert_allclose([entry["probability"] for entry in top], np.sort(expected)[::-1][:3], rtol=1e-5)

    artifact = tmp_path / "widened.jax"
    assert export.main(["--weights", str(workdir), "--out", str(artifact), "--platforms", "cpu"]) == 0
    served = jax_export.deserialize(artifact.read_bytes())
    np.testing.assert_allclose(np.asarray(served.call(batch))[0], expected, rtol=1e-5, atol=1e-7)

    table = tmp_path / "summary.json"
    assert summary.main(["--width_multiplier", "0.5", "--json", str(table)]) == 0
    rows = {row["name"]: row for row in json.loads(table.read_text())["layers"]}
    # Table 1 at half width, counted by hand: conv1 7x7x3x32 + BatchNorm's 2 x 32; inception 3a
    # reads conv3's 96 channels with 32 | 48 -> 64 | 8 -> 16 | pool -> 16 (its "5x5" is 3x3).
    assert rows["conv1"]["params"] == 7 * 7 * 3 * 32 + 2 * 32
    convs = [(1, 96, 32), (1, 96, 48), (3, 48, 64), (1, 96, 8), (3, 8, 16), (1, 96, 16)]
    assert rows["inception3a"]["params"] == sum(k * k * cin * cout + 2 * cout for k, cin, cout in convs)
    assert rows["inception3a"]["output_size"] == [28, 28, 32 + 64 + 16 + 16]
