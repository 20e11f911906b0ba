"""Test-wide setup: 8 fake CPU devices, quiet TensorFlow, the fixtures several files share, and
how the files share pytest's two workers.

Tests that run a subprocess, a whole training run or a TPU compile of GoogLeNet's train step
carry the `slow` marker (pyproject.toml): `pytest -m "not slow"` runs the fast tier alone,
`pytest` runs everything.
"""
import atexit
import json
import os
import shutil
import sys
import tempfile

import pytest
from xdist.scheduler import LoadScopeScheduling

from googlenet_jax.commands.common import prepare_tensorflow  # the standard library only: JAX is not loaded yet

# Must happen before JAX starts its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# With libtpu installed (requirements-dev.txt, for tests/training/test_tpu_compile.py) JAX tries a TPU backend
# first: without a TPU that logs libtpu errors in every process and holds /tmp/libtpu_lockfile.
# The tests run on the CPU; test_aot compiles for TPUs without a TPU backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
prepare_tensorflow()
# torch's CUDA build brings triton, whose LLVM clashes with TensorFlow's: importing torchvision
# after TensorFlow in one process segfaults. The tests never compile GPU kernels, so triton is
# kept out (torch then reports it absent), and torch and TensorFlow load in any order.
sys.modules.setdefault("triton", None)
# One persistent compilation cache for the session, shared by this process and every command
# the tests run (they inherit the environment): the same program at the same shapes, built by
# several tests or runs, compiles once. Removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="googlenet_jax_tests_cache_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import jax  # noqa: E402

import helpers  # noqa: E402

assert jax.device_count() == 8, jax.devices()


# The test files that read one of the expensive session runs below (digits_reference,
# finetuned_workdir): pytest's workers (pyproject.toml: -n 2) take whole files, and the files of
# one run go to the same worker, so that the run happens once.
SHARED_RUNS = {
    **dict.fromkeys(("tests/commands/test_train.py", "tests/commands/test_train_durability.py",
                     "tests/commands/test_gcs.py"), "digits_reference"),
    **dict.fromkeys(("tests/commands/test_evaluate.py", "tests/commands/test_export.py",
                     "tests/commands/test_predict.py", "tests/commands/test_tool_numerics.py",
                     "tests/commands/test_train_freeze.py", "tests/training/test_init_weights.py",
                     "tests/weights/test_loader.py"), "finetuned_workdir"),
}


# The longest scopes, longest first (measured on 2 cores, about 2 to 7 minutes each): handed out
# before the rest, so that neither worker ends the session alone on one of them.
LONGEST_FIRST = ("finetuned_workdir", "digits_reference", "tests/training/test_learning.py",
                 "tests/parity/test_replay.py", "tests/commands/test_launch.py")


class FileScheduling(LoadScopeScheduling):
    """pytest-xdist's scheduling by scope, the scope of a test being its file (its module
    fixtures run once) or the shared run its file reads (SHARED_RUNS); the longest go first."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::")[0]
        return SHARED_RUNS.get(path, path)

    def _assign_work_unit(self, node) -> None:
        longest = next((scope for scope in LONGEST_FIRST if scope in self.workqueue), None)
        if longest is not None:
            self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)


def pytest_xdist_make_scheduler(config, log):
    return FileScheduling(config, log)


@pytest.fixture(scope="session")
def jax_cache():
    """The session's persistent compilation cache (above), for runs that name it explicitly:
    runs with the same shapes and settings (tests/commands/test_train.py, tests/commands/test_train_durability.py)
    compile their steps once."""
    return os.environ["JAX_COMPILATION_CACHE_DIR"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """At tiny sizes torch's thread start-up and spinning cost more than its convolutions."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def torchvision_pth(tmp_path_factory):
    """(path, net): torchvision's googlenet with random weights and aux heads, saved as .pth.

    `net` is set up as torchvision's pretrained builder sets it (transform_input=True), in
    eval mode.
    """
    import torch

    net = helpers.torch_reference("torchvision", aux_logits=True, transform_input=True, seed=3).eval()
    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    torch.save(net.state_dict(), path)
    return str(path), net


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    return helpers.make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory):
    """A tfds data_dir holding the embedded digits, prepared once for the session (train.py
    prepares them on its first run into a data_dir that lacks them)."""
    from googlenet_jax import data

    data_dir = tmp_path_factory.mktemp("digits_data")
    data.get_dataset_info("sklearn_digits", str(data_dir))  # builds it
    return data_dir


@pytest.fixture(scope="session")
def digits_reference(tmp_path_factory, jax_cache, digits_data_dir):
    """{"workdir", "data_dir", "proc"}: helpers.DIGITS_RUN uninterrupted, checkpoints at steps
    4 and 8, and its CompletedProcess.

    The one reference of tests/commands/test_train_durability.py and tests/commands/test_gcs.py, and the straight run
    of tests/commands/test_train.py (one run instead of one a file): how often a run checkpoints
    does not change where it ends, which the first two files' interrupted runs (every 2 steps)
    check bit for bit against this one (every 4 steps)."""
    workdir, data_dir = tmp_path_factory.mktemp("digits_reference") / "workdir", digits_data_dir
    proc = helpers.run_command(["train.py", *helpers.DIGITS_RUN, f"--config.data_dir={data_dir}",
                                "--config.checkpoint_every_steps=4", "--workdir", workdir], cache_dir=jax_cache)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return {"workdir": workdir, "data_dir": data_dir, "proc": proc}


@pytest.fixture(scope="session")
def finetuned_workdir(tmp_path_factory, torchvision_pth, photo_folder, jax_cache):
    """(workdir, train.py stdout): 2 steps from the 1000-class .pth onto the 3-class folder."""
    root = tmp_path_factory.mktemp("finetune")
    workdir = root / "workdir"
    proc = helpers.run_command(["train.py", *helpers.FINETUNE_ARGS, f"--config.data_dir={photo_folder}",
                                f"--config.init_weights={torchvision_pth[0]}", "--workdir", workdir],
                               cache_dir=jax_cache)
    assert json.loads((workdir / "final_metrics.json").read_text())["step"] == 2
    return str(workdir), proc.stdout
