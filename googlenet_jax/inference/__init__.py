"""Inference: images to model inputs, the jitted Classifier, and serving artifacts.

    images       read and preprocess images exactly as the eval pipeline does
    classifier   Classifier, Prediction, classify_files
    serving      serving files: the jax.export artifact and the ONNX file (python -m googlenet_jax.export)
    onnx_export  the ONNX graph, written from the architecture table and the weights
"""
from googlenet_jax.inference.classifier import (
    FEATURES_DIM,
    Classifier,
    FileResult,
    Prediction,
    batch_buckets,
    classify_files,
)
from googlenet_jax.inference.images import (
    ImageError,
    as_image_list,
    preprocess_each,
    preprocess_images,
    read_image,
)

__all__ = [
    "FEATURES_DIM", "Classifier", "FileResult", "ImageError", "Prediction", "as_image_list", "batch_buckets",
    "classify_files", "preprocess_each", "preprocess_images", "read_image",
]
