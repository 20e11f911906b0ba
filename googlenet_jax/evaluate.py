"""`python -m googlenet_jax.evaluate`: the evaluate command, googlenet_jax/commands/evaluate.py."""
if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.evaluate import main

    sys.exit(main())
