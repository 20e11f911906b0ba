"""Demo: GoogLeNet on the embedded scikit-learn digits, on whatever device is present.

Run (the default config of train.py):

    python train.py
    python train.py --config configs/demo.py --workdir workdir/demo

Target: at least 97% held-out top-1 (360 test digits) within 5 minutes of wall time on a
2-core CPU machine, data preparation and compilation included. Measured on a 2-core CPU
machine from an empty data folder: 98.1% after 8 epochs (360 steps) in 186 to 211 s of
wall time (75 to 82 train img/s). The 8x8 digits are upscaled to `image_size` and seen whole, in
training and in evaluation: a center crop for evaluation, or random crops for training,
cut the strokes at the border and cost a point or more of accuracy. The torchvision variant
(BatchNorm) trains quickly with SGD and a cosine schedule.

This file is also the base of every other config: it lists every field the trainer reads
(see `googlenet_jax/config_validation.py` for types and allowed values).
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # Data.
    config.dataset = "sklearn_digits"  # a tfds name, or "image_folder" (with data_dir)
    config.data_dir = config_dict.placeholder(str)  # None: the tfds default
    config.train_split = "train"
    config.eval_split = "test"
    config.num_classes = 10  # must match the dataset
    config.image_size = 64
    # Eval: center crop of this fraction of the shorter side after resizing (torchvision's
    # ImageNet eval uses 224 / 256; 1.0 keeps the whole image, as the digits need).
    config.eval_crop_fraction = 1.0
    config.normalization = "torchvision"  # "torchvision" (ImageNet mean/std) or "paper"
    config.cache = True  # cache the decoded split in memory (small datasets only)
    config.shuffle_buffer = 10_000

    config.augment = ml_collections.ConfigDict()
    # False: the whole image is resized to image_size (the digits fill their 8x8 frame).
    config.augment.inception_crop = False
    config.augment.min_area = 0.08
    config.augment.max_area = 1.0
    config.augment.min_aspect = 3 / 4
    config.augment.max_aspect = 4 / 3
    config.augment.flip = False  # digits are not mirror-symmetric
    config.augment.photometric = False
    config.augment.random_interpolation = False

    # Model.
    config.model = ml_collections.ConfigDict()
    config.model.variant = "torchvision"  # "torchvision" (BatchNorm) or "paper" (LRN, biases)
    config.model.dtype = "float32"  # compute dtype; parameters are always float32
    config.model.dropout_rate = config_dict.placeholder(float)  # None: the variant's own
    config.model.aux_dropout_rate = 0.7
    config.model.transform_input = False
    # Start from existing weights (a torchvision .pth, a workdir or one of its checkpoint
    # steps, a converted checkpoint): matching arrays are copied, the classifiers are
    # freshly initialised when the class count differs. Ignored when resuming.
    config.init_weights = config_dict.placeholder(str)

    # Loss.
    config.aux_weight = 0.3  # loss = CE(main) + aux_weight * (CE(aux1) + CE(aux2))
    config.label_smoothing = 0.0

    # Optimisation. The learning rate is given for `lr_reference_batch_size` images and
    # scaled linearly to `batch_size` in code.
    config.batch_size = 32  # global, over all devices and processes
    config.eval_batch_size = 120  # global
    config.num_epochs = 8.0
    config.num_train_steps = -1  # > 0 overrides num_epochs (short runs, tests)
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 0.4
    config.optimizer.lr_reference_batch_size = 256
    config.optimizer.schedule = "cosine"  # "cosine", "step" or "constant"
    config.optimizer.warmup_epochs = 0.3
    config.optimizer.decay_epochs = 8.0  # "step" schedule: multiply by decay_factor every ...
    config.optimizer.decay_factor = 0.96
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-5  # not applied to biases and BatchNorm parameters
    config.optimizer.grad_clip_norm = 0.0  # 0: no clipping
    config.ema_decay = 0.0  # Polyak (exponential moving) average of the weights; 0: off

    # Devices: "pmap" (single host, BatchNorm statistics averaged over the "batch" axis) or
    # "mesh" (jit over a device mesh with global arrays; the multi-host path).
    config.parallel = "pmap"
    # Several processes (multi-host; see googlenet_jax/training/distributed.py): all three
    # fields, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else
    # distributed=True for JAX's cluster detection (TPU, SLURM, Open MPI).
    config.distributed = False
    config.coordinator_address = config_dict.placeholder(str)  # "HOST:PORT" of process 0
    config.num_processes = config_dict.placeholder(int)
    config.process_id = config_dict.placeholder(int)
    # A process that dies is noticed by the others within this many seconds.
    config.heartbeat_timeout_seconds = 30
    config.seed = 0

    # Bookkeeping (in steps).
    config.log_every_steps = 10
    config.eval_every_steps = 0  # 0: evaluate only at the end
    config.checkpoint_every_steps = 200
    config.keep_checkpoints = 2

    # Non-finite loss or gradient (checked at every step; the update is never applied):
    # "stop" ends the run naming the step, "skip" skips the step and goes on, up to
    # nan_max_consecutive_skips in a row.
    config.nan_policy = "stop"
    config.nan_max_consecutive_skips = 10
    config.inject_nan_at_step = -1  # > 0: poison that step's batch with NaN (tests the above)

    return config
