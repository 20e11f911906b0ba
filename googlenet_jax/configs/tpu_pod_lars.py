"""ImageNet on a large TPU pod slice at batch 32,768 with LARS.

    python -m googlenet_jax.aot --config configs/tpu_pod_lars.py --topology v5p:8x8x8
    python train.py --config configs/tpu_pod_lars.py --config.data_dir=gs://BUCKET/tfds \
        --workdir gs://BUCKET/googlenet/tpu_pod_lars

LARS (You, Gitman and Ginsburg 2017, "Large Batch Training of Convolutional Networks") with
the settings of Google's MLPerf Training v0.7 ResNet-50 submission on TPU v3 pods at batch
32,768 (Kumar et al. 2021, "Exploring the limits of concurrency in ML training on Google
TPUs"): peak learning rate 29.0 reached by an 18-epoch linear warmup, polynomial decay of
power 2 to 1e-4, momentum 0.929, weight decay 1e-4 on kernels, trust coefficient 0.001, no
trust ratio or weight decay on biases and BatchNorm parameters, label smoothing 0.1,
64 epochs. Those were tuned for ResNet-50 (75.9% top-1 in 64 epochs), not for GoogLeNet:
start from them, and expect to retune the peak rate and warmup. For 16,384 images per step
the same submission used a peak of 25.0, a 5-epoch warmup, momentum 0.9, weight decay 2e-4
and 56 epochs (override with --config.batch_size=16384 --config.optimizer.learning_rate=25.0
...; the peak is given for lr_reference_batch_size and scaled linearly from there).
"""
import ml_collections

from googlenet_jax.configs import tpu_pod


def get_config() -> ml_collections.ConfigDict:
    config = tpu_pod.get_config()
    config.batch_size = 32768
    config.eval_batch_size = 32768
    config.num_epochs = 64.0
    config.label_smoothing = 0.1
    opt = config.optimizer
    opt.name = "lars"
    opt.learning_rate = 29.0
    opt.lr_reference_batch_size = 32768  # 29.0 is the peak at this batch, not a per-256 rate
    opt.warmup_epochs = 18.0
    opt.schedule = "polynomial"
    opt.poly_power = 2.0
    opt.end_learning_rate = 1e-4
    opt.momentum = 0.929
    opt.weight_decay = 1e-4
    opt.weight_decay_params = "kernels"  # MLPerf's: no decay on biases and BatchNorm parameters
    opt.trust_coefficient = 0.001
    return config
