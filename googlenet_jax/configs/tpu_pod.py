"""ImageNet on a TPU pod slice (or several GPU hosts) at batch 4,096: jit over a global device mesh.

Run the same command on every host (jax.distributed initializes from the TPU environment;
docs/several_hosts.md has the gcloud, SLURM and ssh commands); check first that the step fits
the slice's chips with `python -m googlenet_jax.aot --config configs/tpu_pod.py --topology
v5p:4x4x4` (docs/tpu_pods.md):

    python train.py --config configs/tpu_pod.py --config.data_dir=gs://BUCKET/tfds \
        --workdir gs://BUCKET/googlenet/tpu_pod

The workdir is a gs:// URL (or a folder every host sees). Each host reads its own slice of
every batch; the host batches form global jax.Arrays sharded over the "batch" mesh axis, so
BatchNorm statistics are computed over the global batch. bfloat16 compute, float32 parameters.
Recipe: configs/imagenet_torchvision.py's SGD with Goyal et al. 2017 ("Accurate, Large
Minibatch SGD") for the large batch: the linear scaling rule (0.1 per 256 images: 1.6 at
4,096) and a 5-epoch linear warmup, then a cosine decay over 90 epochs. Its ImageNet accuracy
has not been measured (see configs/imagenet_torchvision.py). For 16k-32k images per step use
configs/tpu_pod_lars.py.
"""
import ml_collections

from googlenet_jax.configs import imagenet_torchvision


def get_config() -> ml_collections.ConfigDict:
    config = imagenet_torchvision.get_config()
    config.parallel = "mesh"
    config.distributed = True
    config.model.dtype = "bfloat16"
    config.batch_size = 4096
    config.eval_batch_size = 4096
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 5.0
    return config
