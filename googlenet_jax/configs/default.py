"""Every config field, defined once, with a neutral value: GoogLeNet on ImageNet at 224x224.

Every other config in this folder starts from `get_config()` here and overrides only what
its recipe changes; the trainer checks a config's fields, types and values against this one
(googlenet_jax/training/config.py). Run it as it is:

    python train.py --config configs/default.py --config.data_dir=DATA_DIR
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # Data.
    config.dataset = "imagenet2012"  # a tfds name, "image_folder" (with data_dir) or "sklearn_digits"
    config.data_dir = config_dict.placeholder(str)  # tfds data_dir or the image folder; None: tfds' default
    config.train_split = "train"
    config.eval_split = "test"  # ImageNet's labelled "validation" split stands for it (data/sources.py)
    config.num_classes = 1000  # must match the dataset
    config.image_size = 224  # square model input, training and evaluation
    # Eval: resize the shorter side to image_size / eval_crop_fraction, then a center crop
    # (torchvision's ImageNet eval: 256 then 224; 1.0 keeps the whole image).
    config.eval_crop_fraction = 224 / 256
    config.normalization = "torchvision"  # "torchvision" (ImageNet mean/std) or "paper" (Caffe mean pixel)
    config.cache = False  # keep the decoded split in memory (small datasets only)
    config.shuffle_buffer = 10_000  # encoded examples shuffled per process

    config.augment = ml_collections.ConfigDict()
    config.augment.inception_crop = True  # random crops of min_area..max_area of the image; False: whole
    config.augment.min_area = 0.08
    config.augment.max_area = 1.0
    config.augment.min_aspect = 3 / 4
    config.augment.max_aspect = 4 / 3
    config.augment.flip = True  # random horizontal flips
    config.augment.photometric = False  # the paper's brightness, contrast, saturation, hue
    config.augment.random_interpolation = False  # the paper's random resize methods

    # Model: every field is a field of GoogLeNet (googlenet_jax/model/network.py), which the run
    # builds as GoogLeNet(num_classes=..., **config.model) and records in model_info.json.
    config.model = ml_collections.ConfigDict()
    config.model.variant = "torchvision"  # "torchvision" (BatchNorm) or "paper" (LRN, biases)
    config.model.dtype = "float32"  # compute dtype ("bfloat16" on GPUs/TPUs); parameters stay float32
    # ("float64": parameters too, for exact checks on CPU)
    config.model.dropout_rate = config_dict.placeholder(float)  # None: the variant's own (0.2 / 0.4)
    config.model.aux_dropout_rate = 0.7
    config.model.transform_input = False  # torchvision's input transform (its ported weights want it)
    # BatchNorm's running variance: "biased" (Flax's rule) or "unbiased" (torch's: the batch
    # variance times n / (n - 1)); only the statistics evaluation uses differ.
    config.model.bn_running_var = "biased"
    # How each Inception stage is built from its Table 1 row: "reduced" (the paper's Figure 2b,
    # both variants) or "naive" (Figure 2a: no 1x1 reductions, no pool projection; the ablation).
    config.model.inception_block = "reduced"
    config.model.width_multiplier = 1.0  # every backbone convolution's width times this (Table 1 at 1.0)
    # Start from existing weights (a torchvision .pth, a workdir or one of its checkpoint
    # steps, a converted checkpoint): matching arrays are copied, the classifiers are
    # freshly initialised when the class count differs. Ignored when resuming.
    config.init_weights = config_dict.placeholder(str)
    # Fine-tuning with a frozen backbone: this stage and every earlier one keep their
    # parameters and BatchNorm statistics (e.g. "inception4e"); "" freezes nothing.
    config.freeze_up_to = ""

    # Loss.
    config.aux_weight = 0.3  # loss = CE(main) + aux_weight * (CE(aux1) + CE(aux2))
    config.label_smoothing = 0.0

    # Optimisation. The learning rate is given for `lr_reference_batch_size` images and
    # scaled linearly to `batch_size` in code.
    config.batch_size = 256  # global, over all devices and processes
    config.eval_batch_size = 1024  # global
    config.num_epochs = 90.0
    config.num_train_steps = -1  # > 0 overrides num_epochs (short runs, tests)
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"  # "sgd" or "lars" (layer-wise trust ratio, for batches of 16k+)
    config.optimizer.learning_rate = 0.1
    config.optimizer.lr_reference_batch_size = 256
    # After the warmup: "cosine" or "polynomial" (to end_learning_rate), "step" or "constant".
    config.optimizer.schedule = "cosine"
    config.optimizer.end_learning_rate = 0.0  # "cosine" / "polynomial": the rate at the last step
    config.optimizer.poly_power = 2.0  # "polynomial": the exponent
    config.optimizer.warmup_epochs = 0.0  # linear from 0
    config.optimizer.decay_epochs = 30.0  # "step" schedule: multiply by decay_factor every ...
    config.optimizer.decay_factor = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 1e-4  # coupled (added to the gradient)
    # Which parameters it decays: "kernels", "all_but_batchnorm" or "all" (training/optim.py).
    config.optimizer.weight_decay_params = "kernels"
    config.optimizer.trust_coefficient = 0.001  # "lars": eta in the trust ratio eta*|w|/|g + wd*w|
    config.optimizer.grad_clip_norm = 0.0  # global-norm clipping; 0: none
    config.ema_decay = 0.0  # Polyak (exponential moving) average of the weights, for eval; 0: off

    # Devices: "pmap" (single host, BatchNorm statistics averaged over the "batch" axis) or
    # "mesh" (jit over a device mesh with global arrays; the multi-host path).
    config.parallel = "pmap"
    # The dtype gradients are summed over the devices in: "float32" (the parameters' own, float64
    # in float64 runs, whatever model.dtype) or "bfloat16" (half the bytes per step, but each
    # partial sum rounded to 8 bits of mantissa: docs/tpu_pods.md).
    config.grad_reduce_dtype = "float32"
    # Several processes (multi-host; see googlenet_jax/training/distributed.py): all three
    # fields, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else
    # distributed=True for JAX's cluster detection (TPU, SLURM, Open MPI).
    config.distributed = False
    config.coordinator_address = config_dict.placeholder(str)  # "HOST:PORT" of process 0
    config.num_processes = config_dict.placeholder(int)
    config.process_id = config_dict.placeholder(int)
    config.heartbeat_timeout_seconds = 30  # a process that dies is noticed by the others within this
    config.seed = 0  # initialisation, dropout and the data order

    # Bookkeeping (in steps).
    config.log_every_steps = 100  # progress line and TensorBoard scalars
    config.eval_every_steps = 5_000  # 0: evaluate only at the end
    config.checkpoint_every_steps = 2_000  # and at the end, and on preemption
    config.keep_checkpoints = 3  # the newest ones
    # A jax.profiler trace of these training steps ("100-105", both included; "" off) into
    # WORKDIR/plugins/profile, for TensorBoard's profile tab (docs/training.md).
    config.profile_steps = ""

    # Non-finite loss or gradient (checked at every step; the update is never applied):
    # "stop" ends the run naming the step, "skip" skips the step and goes on, up to
    # nan_max_consecutive_skips in a row.
    config.nan_policy = "stop"
    config.nan_max_consecutive_skips = 10
    config.inject_nan_at_step = -1  # > 0: poison that step's batch with NaN (tests the above)

    return config
