"""`python -m googlenet_jax.export`: the export command, googlenet_jax/commands/export.py."""
if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.export import main

    sys.exit(main())
