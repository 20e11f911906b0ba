"""ImageNet on a TPU pod slice (or several GPU hosts): jit over a global device mesh.

Run the same command on every host (jax.distributed initializes from the TPU environment;
docs/several_hosts.md has the gcloud, SLURM and ssh commands):

    python train.py --config configs/tpu_pod.py --config.data_dir=gs://BUCKET/tfds \
        --workdir /mnt/shared/googlenet/tpu_pod

The workdir must be a folder every host sees (NFS, or a bucket mounted with gcsfuse).
Each host reads its own slice of every batch; the host batches form global jax.Arrays
sharded over the "batch" mesh axis, so BatchNorm statistics are computed over the global
batch. bfloat16 compute, float32 parameters. Same recipe as configs/imagenet_torchvision.py
with a large batch (learning rate scaled linearly, 5 warmup epochs); should reach about
69-70% top-1.
"""
import ml_collections

from configs import imagenet_torchvision


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
