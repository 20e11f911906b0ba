"""`python -m googlenet_jax.aot`: the aot command, googlenet_jax/commands/aot.py."""
if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.aot import main

    sys.exit(main())
