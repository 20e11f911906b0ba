"""The embedded demo dataset: scikit-learn's handwritten digits as a tfds builder.

`sklearn.datasets.load_digits` ships 1,797 real 8x8 scans (values 0..16) inside
scikit-learn, so building this dataset needs no download. Importing this module
registers the builder under the tfds name `sklearn_digits`.

Split (fixed, documented in docs/data.md): stratified 80/20 with seed 0 via
`sklearn.model_selection.train_test_split`, i.e. 1,437 train / 360 test examples.
Images are stored as uint8 RGB 8x8x3: value * 255 / 16 rounded, the gray level
replicated to three channels.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NAME = "sklearn_digits"
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def digits_split() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Returns {"train"|"test": (images uint8 (N, 8, 8, 3), labels int64 (N,), source indices (N,))}."""
    from sklearn import datasets, model_selection  # Imported lazily: only the builder needs it.

    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = model_selection.train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels,
        random_state=SPLIT_SEED)
    return {name: (images[idx], labels[idx], idx)
            for name, idx in (("train", train_idx), ("test", test_idx))}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set), as RGB uint8."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 80/20 split, seed 0."}
    # No checksums file: nothing is downloaded. Without this, tfds 4.9.10 looks up the
    # builder's source folder through `importlib_resources`, which it does not install
    # on Python >= 3.9.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data ships with scikit-learn.
        return {name: self._generate_examples(*arrays) for name, arrays in digits_split().items()}

    def _generate_examples(self, images, labels, indices):
        for image, label, index in zip(images, labels, indices):
            yield int(index), {"image": image, "label": int(label)}
