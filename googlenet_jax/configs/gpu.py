"""ImageNet, torchvision recipe, bfloat16 compute on the local GPUs (float32 parameters/loss).

Run:

    python train.py --config configs/gpu.py --config.data_dir=DATA_DIR --workdir workdir/gpu

Same recipe as configs/imagenet_torchvision.py (whose docstring says what is known of
its accuracy), plus a 2-epoch warmup for the larger batch; bfloat16 convolutions run on the
tensor cores. batch_size is global: 256 per GPU on 8 GPUs
here; the learning rate scales with it in code.
"""
import ml_collections

from googlenet_jax.configs import imagenet_torchvision


def get_config() -> ml_collections.ConfigDict:
    config = imagenet_torchvision.get_config()
    config.model.dtype = "bfloat16"
    config.batch_size = 2048
    config.optimizer.warmup_epochs = 2.0
    return config
