"""The names googlenet_jax/parity/ still imports from here; they live in googlenet_jax/commands/common.py
and googlenet_jax/errors.py. This module goes once parity imports them from there."""
from googlenet_jax.commands.common import (  # noqa: F401  (for parity until it moves)
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    ArgumentParser,
    UsageError,
    config_overrides,
    load_config,
    prepare_tensorflow,
    run,
    transform_input_flag,
)
from googlenet_jax.errors import first_line  # noqa: F401  (for parity until it moves)
