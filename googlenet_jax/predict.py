"""`python -m googlenet_jax.predict`: the predict command, googlenet_jax/commands/predict.py."""
if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.predict import main

    sys.exit(main())
