"""The shipped ImageNet-1k class list against its two sources, and the naming rules."""
import os

import tensorflow_datasets as tfds
from torchvision.models import GoogLeNet_Weights

from googlenet_jax.weights import class_names


def test_wordnet_ids_are_tfds_imagenet2012_labels_in_order():
    labels = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "labels.txt")
    with open(labels) as f:
        expected = f.read().split()
    assert [c.wordnet_id for c in class_names.imagenet_classes()] == expected
    assert expected == sorted(expected)  # the order both frameworks use


def test_names_are_torchvisions_categories_in_order():
    expected = GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]
    assert list(class_names.imagenet_names()) == expected


def test_indices_run_from_0_to_999():
    assert [c.index for c in class_names.imagenet_classes()] == list(range(1000))


def test_1000_class_models_of_unknown_data_get_imagenet_names():
    assert class_names.resolve(1000)[:3] == ("tench", "goldfish", "great white shark")


def test_imagenet_wordnet_ids_as_dataset_names_become_readable_names():
    ids = [c.wordnet_id for c in class_names.imagenet_classes()]
    assert class_names.resolve(1000, dataset="my_imagenet_copy", dataset_names=ids)[0] == "tench"


def test_a_datasets_own_names_win_for_other_datasets():
    assert class_names.resolve(3, dataset="image_folder", dataset_names=["cat", "coffee", "rocket"]) == (
        "cat", "coffee", "rocket")
    names = [f"n{i}" for i in range(1000)]
    assert class_names.resolve(1000, dataset="other1k", dataset_names=names)[:2] == ("n0", "n1")


def test_placeholders_only_when_nothing_is_known():
    assert class_names.resolve(3) == ("class_0", "class_1", "class_2")
    assert class_names.resolve(3, dataset="x", dataset_names=["a", "b"]) == ("class_0", "class_1", "class_2")
