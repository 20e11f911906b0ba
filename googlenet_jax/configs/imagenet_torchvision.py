"""ImageNet with the torchvision GoogLeNet (BatchNorm) and torchvision's classification recipe.

Run (ImageNet prepared for tfds as `imagenet2012` under DATA_DIR):

    python train.py --config configs/imagenet_torchvision.py \
        --config.data_dir=DATA_DIR --workdir workdir/imagenet_torchvision

The recipe is torchvision's reference script (references/classification/train.py) with its
defaults, as run on 8 GPUs:

    torchrun --nproc_per_node=8 train.py --model googlenet --epochs 90 --batch-size 32 \
        --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --lr-scheduler steplr --lr-step-size 30 \
        --lr-gamma 0.1 --label-smoothing 0.0

SGD momentum 0.9 (no Nesterov, no dampening), learning rate 0.1 per 256 images (scaled
linearly with batch_size here; the reference takes --lr as given), x0.1 every 30 epochs, 90
epochs, weight decay 1e-4 coupled into the gradient of every parameter (the reference's
default: no --norm-weight-decay or --bias-weight-decay), BatchNorm running variance with
torch's unbiased rule, no EMA, no label smoothing, inception crop + flip at 224x224, one
center crop (256 then 224) on the validation split. `python -m googlenet_jax.parity
--train_steps N` runs this config's steps beside a torch loop with these settings
(docs/parity.md, "Training parity").

Where it still differs from that command:
- the loss: the reference has no aux heads in its loss (googlenet's train-mode output is a
  tuple its criterion does not take); here CE(main) + 0.3 (CE(aux1) + CE(aux2)), the paper's;
- the step schedule decays every round(30 x steps_per_epoch) steps, with steps_per_epoch =
  1,281,167 / 256 = 5004.6 (the reference steps per epoch of 5,005 batches, the last one
  short): 150,137 steps here against 150,150 there;
- the input pipeline is tf.data (bilinear resize without antialiasing after the crop), not
  PIL's;
- dropout 0.2 / 0.7 is drawn from JAX's generator, not torch's.

Accuracy: not measured for this code on ImageNet. torchvision's IMAGENET1K_V1 googlenet
weights (69.78% top-1 / 89.53% top-5) were ported from TF-slim, not trained with this recipe,
and torchvision's maintainers reported not reproducing them from scratch (pytorch/vision
PR #821); expect something near, not a promise. Use configs/gpu.py (bfloat16) or
configs/tpu_pod.py for speed.
"""
import ml_collections

from googlenet_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.optimizer.schedule = "step"
    config.optimizer.weight_decay_params = "all"
    config.model.bn_running_var = "unbiased"
    return config
