"""Real photos for the inference tests: scikit-image's sample images (shipped in its wheel).

`make_photo_folder` cuts an image-folder dataset (train/ and test/, three classes) out of
three photos, so a model can be trained, predicted and evaluated on real pictures offline.
"""
import os

import numpy as np
import skimage
from PIL import Image

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
# name -> (file, what it shows); JPEG, PNG, RGB and grayscale, portrait and landscape, odd sizes.
PHOTOS = {
    "rocket": "rocket.jpg",  # 427x640 JPEG
    "cat": "chelsea.png",  # 300x451 PNG
    "coffee": "coffee.png",  # 400x600
    "astronaut": "astronaut.png",  # 512x512
    "hubble": "hubble_deep_field.jpg",  # 872x1000 JPEG
    "camera": "camera.png",  # 512x512 grayscale
}
FOLDER_CLASSES = ("cat", "coffee", "rocket")


def path(name: str) -> str:
    return os.path.join(DATA, PHOTOS[name])


def paths(*names: str) -> list[str]:
    return [path(n) for n in (names or PHOTOS)]


def make_photo_folder(root, *, train_per_class=8, test_per_class=4, size=(48, 40), seed=0) -> str:
    """root/{train,test}/{cat,coffee,rocket}/N.jpg: random square crops of three photos."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in FOLDER_CLASSES:
            image = Image.open(path(name)).convert("RGB")
            width, height = image.size
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                side = int(min(width, height) * rng.uniform(0.5, 0.9))
                left, top = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                crop = image.crop((left, top, left + side, top + side)).resize(size)
                crop.save(os.path.join(folder, f"{i}.jpg"), quality=90)
    return str(root)
