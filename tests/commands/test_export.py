"""`python -m googlenet_jax.export`: the jax artifact and the ONNX file run in a process without
googlenet_jax (jax alone, onnxruntime alone) and equal `model.apply`."""
import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import googlenet_jax
from googlenet_jax import inference

import helpers
from helpers import run_command

pytestmark = pytest.mark.slow  # subprocesses and training runs

# Run with only jax and numpy: googlenet_jax is made unimportable first.
LOADER = """
import sys
sys.modules["googlenet_jax"] = None
import numpy as np
from jax import export
artifact, batch, out = sys.argv[1:]
serve = export.deserialize(open(artifact, "rb").read())
np.save(out, np.asarray(serve.call(np.load(batch))))
"""


def _relative_error(actual, expected):
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def test_artifacts_load_with_jax_alone_and_match_model_apply(tmp_path, torchvision_pth):
    """Logits within 1e-6; probabilities within 1e-5.

    Measured on these weights: logits 7.2e-7 from eager `model.apply` (the artifact runs with
    BatchNorm folded into the convolutions; torch's own logits are 6.0e-7 from it);
    probabilities 1.9e-6, where jit and eager `model.apply` already differ by 1.5e-6 (XLA
    folds the embedded weights into the graph; softmax amplifies).
    """
    batch = np.random.default_rng(0).standard_normal((5, 224, 224, 3)).astype(np.float32)
    loaded = googlenet_jax.load(torchvision_pth[0])
    logits = np.asarray(loaded.model.apply(loaded.variables, batch, train=False))
    # The batch dimension is symbolic: one artifact is called with 1 image, the other with 5.
    for flags, expected, bound, size in (([], np.asarray(jax.nn.softmax(logits, -1)), 1e-5, 1),
                                         (["--logits"], logits, 1e-6, 5)):
        artifact = tmp_path / f"googlenet{''.join(flags)}.jax"
        proc = run_command(["-m", "googlenet_jax.export", "--weights", torchvision_pth[0], "--out", artifact,
                            *flags])
        assert "wrote" in proc.stdout
        meta = json.loads((tmp_path / f"{artifact.name}.json").read_text())
        assert meta["platforms"] == ["cpu", "cuda", "tpu"] and meta["jax_version"] == jax.__version__
        assert meta["input"]["shape"] == ["batch", 224, 224, 3]
        assert meta["output"]["kind"] == ("logits" if flags else "probabilities")
        assert meta["class_names"][0] == "tench" and meta["preprocessing"]["resize_shorter_side"] == 256

        np.save(tmp_path / "batch.npy", batch[:size])
        subprocess.run([sys.executable, "-I", "-c", LOADER, artifact, tmp_path / "batch.npy",
                        tmp_path / "out.npy"], check=True, cwd=tmp_path, timeout=600)
        out = np.load(tmp_path / "out.npy")
        assert out.shape == (size, 1000), flags
        assert _relative_error(out, expected[:size]) <= bound, flags


def test_bad_weights_fail_in_one_line(tmp_path):
    proc = run_command(["-m", "googlenet_jax.export", "--weights", tmp_path / "nothing", "--out",
                        tmp_path / "x.jax"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no such file or directory" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.jax").exists()
    proc = run_command(["-m", "googlenet_jax.export", "--weights", tmp_path, "--out", tmp_path / "x.jax",
                        "--platforms", "cpu,gpu"], check=False)
    assert proc.returncode == 2 and "platforms must be among" in proc.stderr


# ----------------------------------------------------------------------------- ONNX
# Run with only onnxruntime and numpy: googlenet_jax is made unimportable first.
ONNX_LOADER = """
import sys
sys.modules["googlenet_jax"] = None
import numpy as np
import onnxruntime
model, batch, out = sys.argv[1:]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
batch = np.load(batch)
run = lambda x: session.run(None, {"images": x})[0]
np.savez(out, one=run(batch[:1]), five=run(batch))
"""


@pytest.fixture(scope="module")
def onnx_inputs(torchvision_pth, tmp_path_factory):
    """Five model inputs at 224: three real photos through each variant's eval preprocessing,
    then two random ones; {variant: (batch file, batch)}."""
    root = tmp_path_factory.mktemp("onnx_inputs")
    batches = {}
    for variant in ("torchvision", "paper"):
        info = googlenet_jax.ModelInfo(variant=variant, num_classes=0, class_names=(), normalization=variant)
        photos = inference.preprocess_images(helpers.photos("rocket", "cat", "camera"), info)
        noise = np.random.default_rng(1).standard_normal((2, 224, 224, 3)).astype(np.float32)
        batches[variant] = (root / f"{variant}.npy", np.concatenate([photos, noise]))
        np.save(*batches[variant])
    return batches


@pytest.mark.parametrize("variant", ["torchvision", "paper"])
def test_onnx_files_run_in_onnxruntime_alone_and_match_model_apply(variant, onnx_inputs, torchvision_pth, tmp_path):
    """Logits and probabilities within 1e-5 of `model.apply` (measured: about 1e-6), batch 1 and 5."""
    import onnx
    import torch

    if variant == "torchvision":
        weights = torchvision_pth[0]
    else:  # random Caffe weights sized for 0..255 pixels, as the released ones are: not saturated
        net = helpers.torch_reference("paper", seed=6)
        with torch.no_grad():
            net.conv1.conv.weight /= 64.0
        weights = tmp_path / "paper.pth"
        torch.save(net.state_dict(), weights)
    loaded = googlenet_jax.load(weights)
    batch_file, batch = onnx_inputs[variant]
    logits = np.asarray(jax.jit(functools.partial(loaded.model.apply, train=False))(loaded.variables, batch))
    for flags, expected in (([], np.asarray(jax.nn.softmax(logits, -1))), (["--logits"], logits)):
        path = tmp_path / f"googlenet{''.join(flags)}.onnx"
        run_command(["-m", "googlenet_jax.export", "--weights", weights, "--out", path, "--format", "onnx", *flags])
        meta = json.loads((tmp_path / f"{path.name}.json").read_text())
        assert meta["opset"] == 17 and meta["variant"] == variant and meta["class_names"][0] == "tench"
        assert meta["output_name"] == ("logits" if flags else "probabilities")
        assert meta["transform_input_inside"] == (variant == "torchvision")
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
        dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 1000]

        subprocess.run([sys.executable, "-I", "-c", ONNX_LOADER, path, batch_file, tmp_path / "out.npz"],
                       check=True, cwd=tmp_path, timeout=600)
        out = np.load(tmp_path / "out.npz")
        assert out["one"].shape == (1, 1000) and out["five"].shape == (5, 1000)
        assert _relative_error(out["one"], expected[:1]) <= 1e-5, flags
        assert _relative_error(out["five"], expected) <= 1e-5, flags


def test_a_training_workdir_exports_to_onnx_with_its_class_names(finetuned_workdir, tmp_path):
    path = tmp_path / "folder.onnx"
    run_command(["-m", "googlenet_jax.export", "--weights", finetuned_workdir[0], "--out", path, "--format", "onnx"])
    meta = json.loads((tmp_path / "folder.onnx.json").read_text())
    assert meta["class_names"] == ["cat", "coffee", "rocket"] and meta["input"]["shape"] == ["batch", 32, 32, 3]


def test_without_the_onnx_package_the_error_says_what_to_install(torchvision_pth, tmp_path):
    blocked = tmp_path / "onnx"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('No module named onnx')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), helpers.REPO])}
    proc = run_command(["-m", "googlenet_jax.export", "--weights", torchvision_pth[0], "--out", tmp_path / "x.onnx",
                        "--format", "onnx"], check=False, env=env)
    assert proc.returncode == 2 and not (tmp_path / "x.onnx").exists()
    assert proc.stderr.strip().splitlines() == [
        "export: error: --format onnx needs the onnx package (No module named onnx): pip install onnx==1.23.2"]
