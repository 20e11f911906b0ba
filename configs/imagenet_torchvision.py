"""ImageNet with the torchvision GoogLeNet (BatchNorm) and torchvision's classification recipe.

Run (ImageNet prepared for tfds as `imagenet2012` under DATA_DIR):

    python train.py --config configs/imagenet_torchvision.py \
        --config.data_dir=DATA_DIR --workdir workdir/imagenet_torchvision

Recipe: SGD momentum 0.9, learning rate 0.1 per 256 images (scaled linearly with
batch_size), step decay x0.1 every 30 epochs, weight decay 1e-4, 90 epochs, inception crop +
flip at 224x224, single center-crop evaluation (256 then 224) on the validation split: the
defaults of configs/default.py with the step schedule.
Should reach about 69-70% top-1 / 89% top-5 (torchvision's IMAGENET1K_V1 weights report
69.78 / 89.53). Use configs/gpu.py (bfloat16) or configs/tpu_pod.py for speed.
"""
import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.optimizer.schedule = "step"
    return config
