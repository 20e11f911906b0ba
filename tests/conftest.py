"""Test-wide setup: 8 fake CPU devices so the parallel paths run on any machine."""
import os

# Must happen before JAX starts its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

# torchvision segfaults when it is imported after TensorFlow (their bundled native
# libraries clash); imported first, both work in one process.
import torchvision  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

# tf.data is used only on the host: keep TensorFlow off any accelerator.
tf.config.set_visible_devices([], "GPU")
assert jax.device_count() == 8, jax.devices()
