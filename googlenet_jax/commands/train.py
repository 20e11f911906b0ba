"""Trains GoogLeNet: `python -m googlenet_jax train [--config CONFIG] [--config.FIELD=VALUE ...]
[--workdir DIR]` (from a checkout, `python train.py` with the same flags).

Without --config it trains the demo config (configs/demo.py, shipped with the package) into
workdir/demo; without --workdir, workdir/<config name>. An existing workdir resumes from its
latest checkpoint. Results land in WORKDIR/final_metrics.json. A bad flag, config or run ends with
one line, `train: error: ...` (`train.py: error: ...` from train.py), and exit status 1.
"""
from __future__ import annotations

import os
import sys

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo.py")


def _prefix() -> str:
    """console.process_prefix() once jax.distributed runs (JAX is loaded then), else ''."""
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return ""
    from googlenet_jax import console

    return console.process_prefix()


def _fail(prog: str, message: str) -> None:
    print(f"{_prefix()}{prog}: error: {message}", file=sys.stderr, flush=True)
    # Library threads (orbax's asynchronous writers) may still print while the interpreter
    # shuts down; the error above stays the last line.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
    sys.exit(1)


def main(argv=None, *, prog: str = "train") -> int:
    """Parses absl flags (--config, --config.FIELD=VALUE, --workdir, --verbosity ...) from `argv`
    (default sys.argv[1:]) and trains; exits the process when done (absl's app.run)."""
    from absl import app, flags
    from ml_collections import config_flags

    from googlenet_jax.errors import first_line

    argv = [prog, *(sys.argv[1:] if argv is None else argv)]
    if "config" not in flags.FLAGS:  # the overrides are flags too, defined from argv
        try:
            config_flags.DEFINE_config_file(
                "config", DEMO_CONFIG, "Training config file (configs/*.py); override fields with "
                "--config.FIELD=VALUE.", lock_config=True, sys_argv=argv)
        except Exception as e:  # noqa: BLE001  (an override of a field the config does not have)
            _fail(prog, f"bad --config override (unknown field?): {first_line(e)}")
        flags.DEFINE_string("workdir", None, "Output folder (checkpoints, TensorBoard events, "
                            "final_metrics.json); default workdir/<config name>.")

    def parse_flags(argv):
        """absl flag parsing, with bad flags and bad config files reported in one line."""
        if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in argv[1:]):
            print(f"{__doc__}\nflags:\n{flags.FLAGS.module_help(__name__)}\n\nTry --helpfull for every flag.")
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except SystemExit:  # absl exits 1 after printing --helpfull; asking for help is no error
            if any(arg.startswith(("--help", "-h", "-?")) for arg in argv[1:]):
                sys.exit(0)
            raise
        except Exception as e:  # noqa: BLE001  (flag, config-file and override errors of any type)
            _fail(prog, first_line(e))

    app.run(lambda rest: _train(rest, prog), argv=argv, flags_parser=parse_flags)
    return 0


def _train(argv: list[str], prog: str) -> None:
    from absl import flags, logging
    from ml_collections import config_flags

    from googlenet_jax.commands import common
    from googlenet_jax.errors import first_line

    if len(argv) > 1:
        _fail(prog, f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # library INFO logs would bury the progress lines
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    if not os.path.exists(config_file):
        _fail(prog, f"config file not found: {config_file}")
    try:
        config = flags.FLAGS["config"].value
        config.keys()  # a config file that failed to load raises on first use
    except Exception as e:  # noqa: BLE001  (the config file failed to load)
        _fail(prog, first_line(e))
    common.prepare_tensorflow()
    # Imported after flag parsing so that --help and flag errors stay fast.
    from googlenet_jax.training import trainer
    from googlenet_jax.training.checkpointing import CheckpointError
    from googlenet_jax.training.config import ConfigError
    from googlenet_jax.training.nonfinite import NonFiniteLossError
    from googlenet_jax.training.preemption import Preempted

    config_name = os.path.splitext(os.path.basename(config_file))[0]
    workdir = flags.FLAGS.workdir or os.path.join("workdir", config_name)
    try:
        trainer.train_and_evaluate(config, workdir)
    except (ConfigError, CheckpointError, NonFiniteLossError) as e:
        _fail(prog, str(e))
    except Preempted as e:  # the checkpoint is on disk; a non-zero status: the run is not done
        print(f"{_prefix()}{prog}: stopped by {e}", flush=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    sys.exit(main())
