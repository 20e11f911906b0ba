"""Trains GoogLeNet: `python train.py [--config configs/NAME.py] [--config.FIELD=VALUE ...] [--workdir DIR]`.

Without arguments it trains the demo config (configs/demo.py) into workdir/demo. An existing
workdir resumes from its latest checkpoint. Results land in WORKDIR/final_metrics.json.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from googlenet_jax import cli


def _process_prefix() -> str:
    """'[process 1/2] ' once jax.distributed runs several processes, else ''."""
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized() or jax.process_count() == 1:
        return ""
    return f"[process {jax.process_index()}/{jax.process_count()}] "


def _fail(message: str) -> None:
    print(f"{_process_prefix()}train.py: error: {message}", file=sys.stderr, flush=True)
    # Library threads (orbax's asynchronous writers) may still print while the interpreter
    # shuts down; the error above stays the last line.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
    sys.exit(1)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_REPO = os.path.dirname(os.path.abspath(__file__))
try:  # ml_collections reads the --config.FIELD overrides from sys.argv already here
    _CONFIG = config_flags.DEFINE_config_file(
        "config", os.path.join(_REPO, "configs", "demo.py"),
        "Training config file (configs/*.py); override fields with --config.FIELD=VALUE.",
        lock_config=True)
except Exception as e:  # noqa: BLE001  (an override of a field the config does not have)
    _fail(f"bad --config override (unknown field?): {_first_line(e)}")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder (checkpoints, TensorBoard events, final_metrics.json); "
    "default workdir/<config name>.")


def _parse_flags(argv):
    """absl flag parsing, with bad flags and bad config files reported in one line."""
    try:
        return flags.FLAGS(argv)
    except SystemExit:  # absl exits 1 after printing --help; asking for help is no error
        if any(arg.startswith(("--help", "-h", "-?")) for arg in argv[1:]):
            sys.exit(0)
        raise
    except Exception as e:  # noqa: BLE001  (flag, config-file and override errors of any type)
        _fail(_first_line(e))


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # library INFO logs would bury the progress lines
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    if not os.path.exists(config_file):
        _fail(f"config file not found: {config_file}")
    try:
        config = _CONFIG.value
        config.keys()  # a config file that failed to load raises on first use
    except Exception as e:  # noqa: BLE001  (the config file failed to load)
        _fail(_first_line(e))
    cli.prepare_tensorflow()
    # Imported after flag parsing so that --help and flag errors stay fast.
    from googlenet_jax.training import trainer
    from googlenet_jax.training.checkpointing import CheckpointError
    from googlenet_jax.training.config import ConfigError
    from googlenet_jax.training.preemption import Preempted

    config_name = os.path.splitext(os.path.basename(config_file))[0]
    workdir = _WORKDIR.value or os.path.join("workdir", config_name)
    try:
        trainer.train_and_evaluate(config, workdir)
    except (ConfigError, CheckpointError, trainer.NonFiniteLossError) as e:
        _fail(str(e))
    except Preempted as e:  # the checkpoint is on disk; a non-zero status: the run is not done
        print(f"{_process_prefix()}train.py: stopped by {e}", flush=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
