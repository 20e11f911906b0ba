"""The jitted classifier: build once, call on images, get the top-k classes.

    from googlenet_jax import Classifier
    classify = Classifier("googlenet.pth")          # any source googlenet_jax.load reads
    classify(["cat.jpg", pil_image, uint8_array])   # per image: [Prediction(index, name, probability), ...]

For people who batch themselves: `predict(batch)` / `features(batch, stage=...)` take a
preprocessed float32 (N, S, S, 3) batch of any N, and `predict_fn` is the bare `jax.jit`
function `(variables, batch) -> probabilities`. Batches are padded to a few fixed sizes
(powers of two up to `batch_size`), so a ragged last batch does not compile again; with
several devices the batch is sharded over a mesh of them.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from googlenet_jax import parallel
from googlenet_jax import weights as weights_lib
from googlenet_jax.inference import images as images_lib
from googlenet_jax.model import architecture as arch
from googlenet_jax.model import folding

FEATURES_DIM = arch.FEATURES_DIM


class Prediction(NamedTuple):
    index: int
    name: str
    probability: float


def batch_buckets(batch_size: int, num_devices: int) -> list[int]:
    """The padded batch sizes: num_devices * 2^k below batch_size, then batch_size itself
    (batch_size rounded up to a multiple of num_devices)."""
    top = -(-batch_size // num_devices) * num_devices
    sizes, size = [], num_devices
    while size < top:
        sizes.append(size)
        size *= 2
    return sizes + [top]


class Classifier:
    """GoogLeNet inference on images, jitted once per padded batch size.

    Args:
      weights: a path any source `googlenet_jax.load` reads, or a `LoadedModel`.
      batch_size: the largest batch sent to the devices at once.
      dtype: compute dtype (jnp.bfloat16 is faster on GPU/TPU); outputs stay float32. None:
        float32 for a path, the LoadedModel's own otherwise.
      transform_input, use_average: passed to `googlenet_jax.load`.
      devices: the devices to shard batches over (default: every local device).
      fold_batch_norm: run the network with BatchNorm folded into its convolutions
        (googlenet_jax/model/folding.py): the same outputs up to float rounding, one
        multiply-add less per activation. `model` and `variables` are then the folded ones,
        the pair `predict_fn` takes.
    """

    def __init__(self, weights: str | os.PathLike | weights_lib.LoadedModel, *, batch_size: int = 32,
                 dtype: Any = None, transform_input: bool | None = None,
                 use_average: bool = True, devices: Sequence[jax.Device] | None = None,
                 fold_batch_norm: bool = True):
        if not isinstance(weights, weights_lib.LoadedModel):
            weights = weights_lib.load(weights, transform_input=transform_input,
                                       use_average=use_average, dtype=dtype or jnp.float32)
        elif dtype is not None:
            weights = weights._replace(model=weights.model.clone(dtype=dtype))
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        model, variables = weights.model, weights.variables
        if fold_batch_norm:
            model, variables = folding.fold_batch_norm(model, variables)
        self.model, self.info = model, weights.info
        self.class_names = self.info.class_names
        self._devices = parallel.MeshParallel(list(devices or jax.local_devices()))
        self.devices = self._devices.devices
        self.variables = self._devices.put_state(variables)
        self.buckets = batch_buckets(batch_size, len(self.devices))

        @jax.jit
        def predict_fn(variables, images):
            logits = model.apply(variables, images, train=False)
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        self.predict_fn = predict_fn
        self._features_fns = {}

    def features_fn(self, stage: str = "avgpool"):
        """The jitted `(variables, batch) -> float32 output of stage` (avgpool: the pooled 1024-d
        features), running the network only as far as that stage."""
        if stage not in self._features_fns:
            model = self.model  # an unknown stage is the model's ValueError, at the first call

            @jax.jit
            def fn(variables, images):
                out = model.apply(variables, images, train=False, capture=(stage,), features_only=True)
                return out[stage].astype(jnp.float32)

            self._features_fns[stage] = fn
        return self._features_fns[stage]

    @property
    def batch_size(self) -> int:
        return self.buckets[-1]

    def preprocess(self, images: Any) -> np.ndarray:
        """Images (one, a list, or an (N, H, W, C) array) -> float32 (N, S, S, 3), model-ready."""
        return images_lib.preprocess_images(images_lib.as_image_list(images), self.info)

    def _run(self, fn, batch) -> np.ndarray:
        """fn over `batch` in padded, sharded chunks; float32 (N, ...) on the host.

        Any image size the model accepts works; each new size compiles once more.
        """
        batch = np.asarray(batch, np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected a preprocessed (N, H, W, 3) batch, got shape {batch.shape}")
        outputs = []
        for start in range(0, max(len(batch), 1), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            padded_size = next(b for b in self.buckets if b >= max(len(chunk), 1))
            padded = np.zeros((padded_size,) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            out = fn(self.variables, self._devices.put_batch(padded))
            outputs.append(np.asarray(out)[:len(chunk)])
        return np.concatenate(outputs)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 (N, S, S, 3) -> class probabilities float32 (N, num_classes)."""
        return self._run(self.predict_fn, batch)

    def features(self, batch: np.ndarray, stage: str = "avgpool") -> np.ndarray:
        """Preprocessed float32 (N, S, S, 3) -> one stage's output, float32: (N, 1024) pooled
        features for "avgpool" (the default), (N, H, W, C) for a backbone stage such as
        "inception4e" (see `googlenet_jax.model.stage_names`)."""
        return self._run(self.features_fn(stage), batch)

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[Prediction]]:
        """Per row of (N, num_classes) probabilities, the k most likely classes, best first."""
        k = min(k, probabilities.shape[-1])
        order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
        return [[Prediction(int(i), self.class_names[i], float(row[i])) for i in top]
                for row, top in zip(probabilities, order)]

    def __call__(self, images: Any, top_k: int = 5) -> list[list[Prediction]]:
        """Images (one, a list, or an (N, H, W, C) array) -> per image its top_k Predictions."""
        return self.top_k(self.predict(self.preprocess(images)), top_k)


class FileResult(NamedTuple):
    """One image file's outcome: its top-k (or the error that stopped it) and its features."""

    image: str
    top_k: list[Prediction] | None
    error: images_lib.ImageError | None
    features: np.ndarray | None


def classify_files(classifier: Classifier, paths: Sequence[str], *, top_k: int = 5,
                   features_stage: str | None = None) -> Iterator[FileResult]:
    """Per path, in order: its top_k Predictions, or the ImageError that stopped it (the others
    go on), and with `features_stage` that stage's features (NaN for an unreadable image).
    Chunk by chunk, so that a long list of large photos never sits decoded in memory."""
    for start in range(0, len(paths), classifier.batch_size):
        chunk = paths[start:start + classifier.batch_size]
        inputs = images_lib.preprocess_each(chunk, classifier.info)
        ok = [i for i, x in enumerate(inputs) if not isinstance(x, images_lib.ImageError)]
        size = classifier.info.image_size
        batch = np.stack([inputs[i] for i in ok]) if ok else np.zeros((0, size, size, 3), np.float32)
        top = dict(zip(ok, classifier.top_k(classifier.predict(batch), top_k)))
        features = dict(zip(ok, classifier.features(batch, features_stage))) if features_stage and ok else {}
        for i, image in enumerate(chunk):
            error = None if i in top else inputs[i]
            yield FileResult(image, top.get(i), error, features.get(i))
