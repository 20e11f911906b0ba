"""`python -m googlenet_jax.launch`: the launch command, googlenet_jax/commands/launch.py."""
if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.launch import main

    sys.exit(main())
