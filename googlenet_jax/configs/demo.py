"""Demo: GoogLeNet on the embedded scikit-learn digits, on whatever device is present.

Run (the default config of train.py):

    python train.py
    python train.py --config configs/demo.py --workdir workdir/demo

Target: at least 97% held-out top-1 (360 test digits) within 5 minutes of wall time on a
2-core CPU machine, data preparation and compilation included. Measured on a 2-core CPU
machine from an empty data folder: 98.1% after 8 epochs (360 steps) in 171 to 211 s of
wall time (75 to 94 train img/s). The 8x8 digits are upscaled to `image_size` and seen whole,
in training and in evaluation: a center crop for evaluation, or random crops for training,
cut the strokes at the border and cost a point or more of accuracy. The torchvision variant
(BatchNorm) trains quickly with SGD, Nesterov momentum and a short cosine schedule.
"""
import ml_collections

from googlenet_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.dataset = "sklearn_digits"
    config.num_classes = 10
    config.image_size = 64
    config.eval_crop_fraction = 1.0  # whole digits
    config.cache = True
    config.augment.inception_crop = False  # the digits fill their 8x8 frame
    config.augment.flip = False  # digits are not mirror-symmetric

    config.batch_size = 32
    config.eval_batch_size = 120
    config.num_epochs = 8.0
    config.optimizer.learning_rate = 0.4
    config.optimizer.warmup_epochs = 0.3
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-5

    config.log_every_steps = 10
    config.checkpoint_every_steps = 200
    config.keep_checkpoints = 2
    return config
