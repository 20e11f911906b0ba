"""Test-wide setup: 8 fake CPU devices so the parallel paths run on any machine."""
import os

# Must happen before JAX starts its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

# torchvision segfaults when it is imported after TensorFlow (their bundled native
# libraries clash); imported first, both work in one process.
import torchvision  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

# tf.data is used only on the host: keep TensorFlow off any accelerator.
tf.config.set_visible_devices([], "GPU")
assert jax.device_count() == 8, jax.devices()


# ----------------------------------------------------------------------------- shared fixtures
# Built once per session: a random torchvision googlenet saved as .pth, an image folder cut
# from real photos, and a train.py workdir fine-tuned from that .pth onto the folder.
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fine-tuning run: learning rate 0, so every loaded weight must survive unchanged.
FINETUNE_ARGS = [
    "--config.dataset=image_folder", "--config.num_classes=3", "--config.image_size=32",
    "--config.batch_size=8", "--config.eval_batch_size=8", "--config.num_train_steps=2",
    "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
    "--config.optimizer.learning_rate=0.0", "--config.optimizer.warmup_epochs=0",
    "--config.ema_decay=0.5",
]


def run_command(args, *, cache_dir=None, check=True, timeout=900):
    """Runs `python ARGS...` from the repository root; returns the CompletedProcess."""
    env = dict(os.environ)  # keeps the 8 fake devices
    if cache_dir is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    proc = subprocess.run([sys.executable, *map(str, args)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
    """One persistent compilation cache for the train.py runs of the whole session: runs with
    the same shapes and settings (tests/test_train_cli.py, tests/test_durability.py) compile
    their steps once."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="session")
def torchvision_pth(tmp_path_factory):
    """(path, net): torchvision's googlenet with random weights and aux heads, saved as .pth.

    `net` is set up as torchvision's pretrained builder sets it (transform_input=True), in
    eval mode.
    """
    import torch_reference
    net = torch_reference.build("torchvision", aux_logits=True, transform_input=True, seed=3).eval()
    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    torch.save(net.state_dict(), path)
    return str(path), net


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    import photos
    return photos.make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def finetuned_workdir(tmp_path_factory, torchvision_pth, photo_folder):
    """(workdir, train.py stdout): 2 steps from the 1000-class .pth onto the 3-class folder."""
    root = tmp_path_factory.mktemp("finetune")
    workdir = root / "workdir"
    proc = run_command(["train.py", *FINETUNE_ARGS, f"--config.data_dir={photo_folder}",
                        f"--config.init_weights={torchvision_pth[0]}", "--workdir", workdir],
                       cache_dir=root / "jax_cache")
    assert json.loads((workdir / "final_metrics.json").read_text())["step"] == 2
    return str(workdir), proc.stdout
