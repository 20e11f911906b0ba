"""Input pipeline: datasets (tfds by name, image folders, the embedded digits demo),
augmentation, evaluation crops, and per-process train/eval batch streams.

Importing this package registers the demo tfds builder `sklearn_digits`.
"""
from googlenet_jax.data import digits as _digits  # noqa: F401  (registers sklearn_digits)
from googlenet_jax.data.pipeline import AugmentConfig, eval_batches, local_batch_size, train_batches
from googlenet_jax.data.sources import DEMO, IMAGE_FOLDER, DatasetInfo, get_dataset_info

__all__ = [
    "AugmentConfig", "DatasetInfo", "DEMO", "IMAGE_FOLDER", "eval_batches", "get_dataset_info",
    "local_batch_size", "train_batches",
]
