"""ImageNet with the paper's GoogLeNet (LRN, no BatchNorm) and the paper's training recipe.

Run (ImageNet prepared for tfds as `imagenet2012` under DATA_DIR):

    python train.py --config configs/imagenet_paper.py \
        --config.data_dir=DATA_DIR --workdir workdir/imagenet_paper

Recipe (Szegedy et al. 2014, section 6, and the released BVLC Caffe solver): SGD momentum
0.9, learning rate 0.01 per 32 images (scaled linearly with batch_size) decreased by 4% every
8 epochs, weight decay 2e-4, dropout 0.4 (main) / 0.7 (auxiliary heads), auxiliary losses
weighted 0.3, Polyak averaging of the weights for evaluation, crops of 8%-100% of the area
with aspect ratio 3/4-4/3, photometric distortions and random resize interpolation.
Accuracy: not measured for this code on ImageNet. For reference, the BVLC Caffe model trained
with this recipe gives 68.7% top-1 / 88.9% top-5 with one center crop, and the paper reports
10.07% top-5 error for one model and one crop.
"""
import ml_collections

from googlenet_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.normalization = "paper"
    config.model.variant = "paper"
    config.model.dropout_rate = 0.4

    config.augment.photometric = True
    config.augment.random_interpolation = True

    config.num_epochs = 250.0
    config.optimizer.learning_rate = 0.01
    config.optimizer.lr_reference_batch_size = 32
    config.optimizer.schedule = "step"
    config.optimizer.decay_epochs = 8.0
    config.optimizer.decay_factor = 0.96
    config.optimizer.weight_decay = 2e-4
    config.ema_decay = 0.9999
    return config
