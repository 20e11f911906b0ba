"""`python -m googlenet_jax COMMAND [ARGS...]`: the commands (googlenet_jax/commands/)."""
import sys

from googlenet_jax.commands import main

sys.exit(main())
