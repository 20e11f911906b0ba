"""`python -m googlenet_jax parity`: comparisons with PyTorch (googlenet_jax/parity/command.py)."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    from googlenet_jax.parity import command

    return command.main(argv)


if __name__ == "__main__":
    sys.exit(main())
