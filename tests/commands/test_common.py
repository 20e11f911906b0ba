"""The commands behave alike (googlenet_jax/commands/common.py): one-line `COMMAND: error: ...`
errors, exit 2 for bad arguments and files, --help everywhere, and one dispatcher in front
(googlenet_jax/commands/__init__.py): `python -m googlenet_jax COMMAND` and `googlenet-jax COMMAND`."""
import importlib
import subprocess
import sys
import tomllib

import pytest

from googlenet_jax.commands import COMMANDS, common

import helpers

WEIGHTS_COMMANDS = ("predict", "evaluate", "export")


def _main(command: str, args: list[str]):
    module = importlib.import_module(f"googlenet_jax.commands.{command}")
    try:
        return module.main(args)
    except SystemExit as exit_:  # argparse's own errors and --help
        return exit_.code


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("command", WEIGHTS_COMMANDS)
def test_a_missing_weights_path_is_one_line_and_exit_2(command, tmp_path, capsys):
    missing = tmp_path / "missing.pth"
    extra = {"predict": [helpers.photo("cat")], "evaluate": [], "export": ["--out", str(tmp_path / "a.jax")]}
    assert _main(command, ["--weights", str(missing), *extra[command]]) == common.EXIT_BAD_INPUT
    assert f"{missing}: no such file or directory" in _one_error_line(capsys, command)


@pytest.mark.parametrize("command,args,message", [
    ("convert", ["to-flax", "{tmp}/missing.pth", "{tmp}/out"], "missing.pth: no such file"),
    ("convert", ["to-torch", "{tmp}/nothing", "{tmp}/out.pth"], "no such checkpoint directory"),
    ("summary", ["--variant", "resnet"], "invalid choice: 'resnet'"),
    ("summary", ["--image_size", "8"], "minimum input of 15"),
    ("parity", ["--weights", "{tmp}/missing.pth"], "no such file"),
    ("launch", ["--num_processes", "2"], "give the command after --"),
    ("launch", ["--num_processes", "0", "--", "true"], "--num_processes must be at least 1"),
    ("predict", ["--weights", "w", "--top_k", "0", "x.jpg"], "--top_k must be at least 1"),
    ("evaluate", ["--weights", "w", "--crops", "1,5"], "crop schemes must be among 1,10,144"),
    ("export", ["--weights", "w", "--out", "{tmp}/no/such/folder/a.jax"], "its folder does not exist"),
    ("export", ["--weights", "w", "--out", "{tmp}/a.onnx", "--format", "onnx", "--dtype", "bfloat16"],
     "options of --format jax"),
])
def test_bad_arguments_and_files_are_one_line_and_exit_2(command, args, message, tmp_path, capsys):
    args = [arg.format(tmp=tmp_path) for arg in args]
    assert _main(command, args) == common.EXIT_BAD_INPUT
    assert message in _one_error_line(capsys, command)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "train"])
def test_every_command_has_help(command, capsys):
    assert _main(command, ["--help"]) == 0
    assert f"python -m googlenet_jax.{command}" in capsys.readouterr().out


def test_python_m_googlenet_jax_lists_every_command_and_runs_them():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "googlenet_jax", *args], cwd=helpers.REPO,
                              capture_output=True, text=True, timeout=120)

    listing = run("--help")
    assert listing.returncode == 0 and all(f"    {command} " in listing.stdout for command in COMMANDS), listing
    summary = run("summary", "--help")
    assert summary.returncode == 0 and "--image_size" in summary.stdout, summary
    train = run("train", "--help")
    assert train.returncode == 0 and "--workdir" in train.stdout, train


def test_the_console_script_runs_the_commands(capsys):
    scripts = tomllib.load(open(f"{helpers.REPO}/pyproject.toml", "rb"))["project"]["scripts"]
    module, function = scripts["googlenet-jax"].split(":")
    entry = getattr(importlib.import_module(module), function)
    assert entry(["summary", "--variant", "paper", "--image_size", "224"]) == 0
    assert "GoogLeNet, paper variant, 224x224 input" in capsys.readouterr().out
    assert entry(["resnet"]) == common.EXIT_BAD_INPUT
    assert "unknown command 'resnet'" in capsys.readouterr().err
    assert entry(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(command in usage for command in COMMANDS), usage


def test_tensorflow_and_tfds_load_without_keras():
    """common.prepare_tensorflow (called by tests/conftest.py as by every command before TensorFlow
    loads) keeps Keras out of TensorFlow's import; the input pipeline works without it. Whole
    commands without Keras: every test that runs one (train.py writes TensorBoard events through
    TensorFlow's own writer, not flax's, whose hparams plugin loads Keras)."""
    import sys

    import tensorflow as tf
    import tensorflow_datasets  # noqa: F401

    # The marker is a None entry (and scikit-learn may be loaded: the digits builder imports it).
    loaded = sorted(name for name, module in sys.modules.items()
                    if module is not None and name.split(".")[0] == "keras")
    assert not loaded, loaded[:10]
    images = tf.data.Dataset.from_tensors(helpers.photo("cat")).map(
        lambda path: tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(path)), (8, 8)))
    assert next(iter(images)).shape == (8, 8, 3)
