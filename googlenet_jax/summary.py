"""`python -m googlenet_jax.summary`: the summary command, googlenet_jax/commands/summary.py."""
if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.summary import main

    sys.exit(main())
