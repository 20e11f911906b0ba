"""ImageNet with the torchvision GoogLeNet (BatchNorm) and torchvision's classification recipe.

Run (ImageNet prepared for tfds as `imagenet2012` under DATA_DIR):

    python train.py --config configs/imagenet_torchvision.py \
        --config.data_dir=DATA_DIR --workdir workdir/imagenet_torchvision

Recipe: SGD momentum 0.9, learning rate 0.1 per 256 images (scaled linearly with
batch_size), step decay x0.1 every 30 epochs, weight decay 1e-4, 90 epochs, inception crop +
flip at 224x224, single center-crop evaluation on the validation split.
Should reach about 69-70% top-1 / 89% top-5 (torchvision's IMAGENET1K_V1 weights report
69.78 / 89.53). Use configs/gpu.py (bfloat16) or configs/tpu_pod.py for speed.
"""
import ml_collections

from configs import demo


def get_config() -> ml_collections.ConfigDict:
    config = demo.get_config()
    config.dataset = "imagenet2012"
    config.eval_split = "validation"
    config.num_classes = 1000
    config.image_size = 224
    config.cache = False
    config.eval_crop_fraction = 224 / 256  # shorter side to 256, center 224 crop

    config.augment.inception_crop = True
    config.augment.min_area = 0.08
    config.augment.max_area = 1.0
    config.augment.min_aspect = 3 / 4
    config.augment.max_aspect = 4 / 3
    config.augment.flip = True

    config.batch_size = 256
    config.eval_batch_size = 1000
    config.num_epochs = 90.0
    config.optimizer.learning_rate = 0.1
    config.optimizer.schedule = "step"
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.decay_epochs = 30.0
    config.optimizer.decay_factor = 0.1
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 1e-4

    config.log_every_steps = 100
    config.eval_every_steps = 5_000
    config.checkpoint_every_steps = 2_000
    config.keep_checkpoints = 3
    return config
