"""Input pipeline: datasets (tfds by name, image folders, the embedded digits demo),
augmentation, evaluation crops, and per-process train/eval batch streams.

Importing this package registers the demo tfds builder `sklearn_digits`.
"""
from googlenet_jax.data import digits as _digits  # noqa: F401  (registers sklearn_digits)
from googlenet_jax.data.pipeline import AugmentConfig
from googlenet_jax.data.pipeline import eval_batches
from googlenet_jax.data.pipeline import local_batch_size
from googlenet_jax.data.pipeline import train_batches
from googlenet_jax.data.sources import DEMO
from googlenet_jax.data.sources import IMAGE_FOLDER
from googlenet_jax.data.sources import DatasetInfo
from googlenet_jax.data.sources import get_dataset_info
from googlenet_jax.data.sources import known_class_names

__all__ = [
    "AugmentConfig", "DatasetInfo", "DEMO", "IMAGE_FOLDER", "eval_batches", "get_dataset_info",
    "known_class_names", "local_batch_size", "train_batches",
]
