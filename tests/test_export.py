"""`python -m googlenet_jax.export`: the artifact runs in a process without googlenet_jax."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import googlenet_jax

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
batch = np.load(batch)
np.savez(out, one=np.asarray(serve.call(batch[:1])), five=np.asarray(serve.call(batch)))
"""


def _relative_error(actual, expected):
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def test_artifacts_load_with_jax_alone_and_match_model_apply(tmp_path, torchvision_pth):
    """Logits within 1e-6; probabilities within 1e-5.

    Measured on these weights: logits 5.5e-7 from eager `model.apply` (torch's own logits
    are 5.6e-7 from it); probabilities 2e-6, where jit and eager `model.apply` already
    differ by 1.5e-6 (XLA folds the embedded weights into the graph; softmax amplifies).
    """
    batch = np.random.default_rng(0).standard_normal((5, 224, 224, 3)).astype(np.float32)
    np.save(tmp_path / "batch.npy", batch)
    loaded = googlenet_jax.load(torchvision_pth[0])
    logits = np.asarray(loaded.model.apply(loaded.variables, batch, train=False))
    for flags, expected, bound in (([], np.asarray(jax.nn.softmax(logits, -1)), 1e-5),
                                   (["--logits"], logits, 1e-6)):
        artifact = tmp_path / f"googlenet{''.join(flags)}.jax"
        proc = run_command(["-m", "googlenet_jax.export", "--weights", torchvision_pth[0], "--out", artifact,
                            *flags])
        assert "wrote" in proc.stdout
        meta = json.loads((tmp_path / f"{artifact.name}.json").read_text())
        assert meta["platforms"] == ["cpu", "cuda", "tpu"] and meta["jax_version"] == jax.__version__
        assert meta["input"]["shape"] == ["batch", 224, 224, 3]
        assert meta["output"]["kind"] == ("logits" if flags else "probabilities")
        assert meta["class_names"][0] == "tench" and meta["preprocessing"]["resize_shorter_side"] == 256

        subprocess.run([sys.executable, "-I", "-c", LOADER, artifact, tmp_path / "batch.npy",
                        tmp_path / "out.npz"], check=True, cwd=tmp_path, timeout=600)
        out = np.load(tmp_path / "out.npz")
        assert out["one"].shape == (1, 1000) and out["five"].shape == (5, 1000)
        assert _relative_error(out["one"], expected[:1]) <= bound, flags
        assert _relative_error(out["five"], expected) <= bound, flags


def test_bad_weights_fail_in_one_line(tmp_path):
    proc = run_command(["-m", "googlenet_jax.export", "--weights", tmp_path / "nothing", "--out",
                        tmp_path / "x.jax"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no such file or directory" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.jax").exists()
    proc = run_command(["-m", "googlenet_jax.export", "--weights", tmp_path, "--out", tmp_path / "x.jax",
                        "--platforms", "cpu,gpu"], check=False)
    assert proc.returncode == 2 and "platforms must be among" in proc.stderr
