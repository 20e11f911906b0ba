"""What several test files share: commands, real photos, torch references, a tiny model.

torch, torchvision and TensorFlow are imported inside the helpers that need them, so a test
file that uses none of them never loads them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import flax.linen as nn
import numpy as np
import skimage
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- commands


# Fake CPU devices of the commands the tests run: sharding is not what they test (test_parallel.py,
# test_checkpointing.py and test_launch.py test it), and a step on 8 fake devices of 2 cores takes
# about 4 times as long as on 2.
COMMAND_DEVICES = 2


def command_env(cache_dir=None, *, devices=COMMAND_DEVICES, base=None) -> dict:
    """The environment of a command run by a test: this session's (quiet TensorFlow, the CPU),
    `devices` fake CPU devices, and every compiled program kept in `cache_dir` (the session's
    compilation cache when None)."""
    env = dict(os.environ if base is None else base, JAX_NUM_CPU_DEVICES=str(devices))
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir or os.environ["JAX_COMPILATION_CACHE_DIR"]),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def run_command(args, *, cache_dir=None, check=True, timeout=900, env=None):
    """Runs `python ARGS...` from the repository root with command_env(cache_dir), or `env`;
    returns the CompletedProcess."""
    env = command_env(cache_dir) if env is None else env
    proc = subprocess.run([sys.executable, *map(str, args)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# The fine-tuning run of conftest's `finetuned_workdir`: the backbone frozen up to 4e, so those
# weights must survive bit for bit while a high learning rate and weight decay move the rest.
FREEZE_UP_TO = "inception4e"
FINETUNE_ARGS = [
    "--config.dataset=image_folder", "--config.num_classes=3", "--config.image_size=32",
    "--config.batch_size=8", "--config.eval_batch_size=8", "--config.num_train_steps=2",
    "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
    "--config.optimizer.learning_rate=0.1", "--config.optimizer.warmup_epochs=0",
    "--config.optimizer.weight_decay=0.01", f"--config.freeze_up_to={FREEZE_UP_TO}", "--config.ema_decay=0.5",
]

# The 8-step run of the tiny test network (architecture.TEST_VARIANTS) on the embedded digits at
# 32x32, batch 16, that tests/commands/test_train_durability.py, test_gcs.py and
# test_train_signals.py interrupt, damage and resume; conftest's `digits_reference` is the
# uninterrupted one they compare with. A constant learning rate, so runs of any length compile
# the very same step (tests/commands/test_train.py uses these shapes too).
DIGITS_STEPS = 8
DIGITS_RUN = [
    "--config.model.variant=tiny", "--config.image_size=32", "--config.batch_size=16", "--config.eval_batch_size=40",
    "--config.log_every_steps=1", "--config.optimizer.schedule=constant",
    "--config.optimizer.warmup_epochs=0", f"--config.num_train_steps={DIGITS_STEPS}",
    "--config.ema_decay=0.9", "--config.keep_checkpoints=2",
]


# ----------------------------------------------------------------------------- real photos
# scikit-image's sample images (shipped in its wheel): name -> file. JPEG, PNG, RGB and
# grayscale, portrait and landscape, odd sizes.
PHOTO_DIR = os.path.join(os.path.dirname(skimage.__file__), "data")
PHOTOS = {
    "rocket": "rocket.jpg",  # 427x640 JPEG
    "cat": "chelsea.png",  # 300x451 PNG
    "coffee": "coffee.png",  # 400x600
    "astronaut": "astronaut.png",  # 512x512
    "hubble": "hubble_deep_field.jpg",  # 872x1000 JPEG
    "camera": "camera.png",  # 512x512 grayscale
}
FOLDER_CLASSES = ("cat", "coffee", "rocket")


def photo(name: str) -> str:
    return os.path.join(PHOTO_DIR, PHOTOS[name])


def photos(*names: str) -> list[str]:
    return [photo(n) for n in (names or PHOTOS)]


def make_photo_folder(root, *, train_per_class=8, test_per_class=4, size=(48, 40), seed=0) -> str:
    """root/{train,test}/{cat,coffee,rocket}/N.jpg: random square crops of three photos."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in FOLDER_CLASSES:
            image = Image.open(photo(name)).convert("RGB")
            width, height = image.size
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                side = int(min(width, height) * rng.uniform(0.5, 0.9))
                left, top = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                crop = image.crop((left, top, left + side, top + side)).resize(size)
                crop.save(os.path.join(folder, f"{i}.jpg"), quality=90)
    return str(root)


# ----------------------------------------------------------------------------- torch references


def torch_reference(variant: str, **kwargs):
    """googlenet_jax.parity.references.build: the variant's torch model with random weights."""
    from googlenet_jax.parity import references

    return references.build(variant, **kwargs)


def state_dict_numpy(net) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random NHWC float32 images, roughly ImageNet-normalised."""
    return np.random.default_rng(seed).standard_normal((n, height, width, 3)).astype(np.float32)


def to_nchw(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| (L2 over all elements)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def torchvision_eval_input(image: Image.Image) -> np.ndarray:
    """torchvision's own eval transform for its GoogLeNet weights of a PIL image, as NHWC
    numpy (1, 224, 224, 3): the independent reference of our eval preprocessing."""
    from torchvision.models import GoogLeNet_Weights

    return GoogLeNet_Weights.IMAGENET1K_V1.transforms()(image).numpy().transpose(1, 2, 0)[None]


# ----------------------------------------------------------------------------- models



TINY_CLASSES = 10


class TinyNet(nn.Module):
    """GoogLeNet's interface (BN over bn_axis_name, dropout, two aux heads, a compute dtype and
    float32 parameters) at toy size."""
    num_classes: int = TINY_CLASSES
    dropout_rate: float = 0.0
    bn_axis_name: str | None = None
    dtype: Any = np.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.Conv(8, (3, 3), use_bias=False, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                         dtype=self.dtype)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        aux1, aux2 = nn.Dense(self.num_classes, dtype=self.dtype)(x), nn.Dense(self.num_classes, dtype=self.dtype)(x)
        return tuple(out.astype(np.float32) for out in (logits, aux1, aux2)) if train else logits


class Linear(nn.Module):
    """logits = flatten(image) @ kernel + bias: a network whose every gradient has a closed form
    (softmax cross-entropy's gradient with respect to the logits is (softmax - one_hot) / B)."""

    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(self.num_classes, name="fc")(x.reshape(x.shape[0], -1))


def softmax(z) -> np.ndarray:
    """Softmax over the last axis, in numpy (float64 for float64 input)."""
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def jit_train_step(model, tx, lr_fn, *, ema_decay):
    """steps.train_step on one device, aux weight 0.3 and no label smoothing, jitted."""
    import jax

    from googlenet_jax.training import steps

    return jax.jit(lambda s, b: steps.train_step(
        s, b, model=model, tx=tx, learning_rate_fn=lr_fn, aux_weight=0.3, label_smoothing=0.0,
        ema_decay=ema_decay, axis_name=None))


def tiny_batch(n: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    return {"image": rng.randn(n, size, size, 3).astype(np.float32),
            "label": rng.randint(0, TINY_CLASSES, n).astype(np.int32)}


def optimizer_config(batch_size: int = 256, **optimizer):
    """A config with configs/default.py's optimizer fields, `optimizer` overriding them."""
    import ml_collections

    from googlenet_jax.training.config import default_config

    config = ml_collections.ConfigDict({"batch_size": batch_size, "optimizer": default_config().optimizer.to_dict()})
    config.optimizer.update(optimizer)
    return config


def augment_config(**overrides):
    """data.AugmentConfig with configs/default.py's augmentation, `overrides` replacing fields."""
    from googlenet_jax import data
    from googlenet_jax.training.config import default_config

    return data.AugmentConfig(**{**default_config().augment.to_dict(), **overrides})


# ----------------------------------------------------------------------------- background commands


class BackgroundCommand:
    """`python ARGS...` started in its own process group, its stdout and stderr collected line
    by line on threads (a pipe nobody reads fills up and blocks the child), for tests that
    signal a running command. `finish` waits and kills the whole group if it is still there."""

    def __init__(self, args, *, cache_dir=None):
        self._start([sys.executable, "-u", *map(str, args)], cache_dir)

    def _start(self, command, cache_dir):
        """Starts `command` (a full argv) with the session's environment and `cache_dir`."""
        import threading

        self.proc = subprocess.Popen(command, cwd=REPO, env=command_env(cache_dir), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines, self.error_lines = [], []
        self._readers = [threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True),
                         threading.Thread(target=lambda: self.error_lines.extend(self.proc.stderr), daemon=True)]
        for reader in self._readers:
            reader.start()

    def wait_for(self, prefix, timeout=600):
        """Returns once a stdout line starts with `prefix`; fails if the command ends first."""
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(line.startswith(prefix) for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"no line starting {prefix!r}:\n{''.join(self.lines)}{''.join(self.error_lines)}")

    def finish(self, timeout=600):
        import signal

        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for reader in self._readers:
            reader.join(10)
        self.stdout, self.stderr = "".join(self.lines), "".join(self.error_lines)
        return self
