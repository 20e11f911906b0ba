"""`python -m googlenet_jax.parity`: see googlenet_jax/parity/command.py."""
import sys

from googlenet_jax.parity.command import main

sys.exit(main())
