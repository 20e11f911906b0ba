"""`python -m googlenet_jax.convert`: the convert command, googlenet_jax/commands/convert.py.

The public converters, defined in googlenet_jax/weights/torch_layout.py:

    torchvision_to_flax(state_dict, *, variant="torchvision") -> {"params"[, "batch_stats"]}
    flax_to_torchvision(variables) -> state_dict for torchvision's googlenet(...) (strict)
"""
from googlenet_jax.weights.torch_layout import flax_to_torchvision, torchvision_to_flax  # noqa: F401  (public API)

if __name__ == "__main__":
    import sys

    from googlenet_jax.commands.convert import main

    sys.exit(main())
