"""`python -m googlenet_jax.parity`: see googlenet_jax/commands/parity.py."""
import sys

from googlenet_jax.commands.parity import main

sys.exit(main())
