"""Training configs: every shipped config validates; bad ones fail with one clear line."""
import importlib.util
import os

import ml_collections
import pytest

from googlenet_jax.training import config as config_validation
from googlenet_jax.training import optim
from googlenet_jax.training.config import ConfigError

from helpers import REPO

CONFIG_NAMES = ["demo", "imagenet_torchvision", "imagenet_paper", "gpu", "tpu_pod", "tpu_pod_lars"]


def load_module(name, monkeypatch):
    monkeypatch.syspath_prepend(REPO)  # variants import their base as `configs.NAME`
    spec = importlib.util.spec_from_file_location(
        f"config_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and "python train.py" in module.__doc__  # says how to run it
    return module


def load_config(name, monkeypatch):
    return load_module(name, monkeypatch).get_config()


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_shipped_configs_validate(name, monkeypatch):
    config_validation.validate_config(load_config(name, monkeypatch))


def test_paper_config_follows_the_paper(monkeypatch):
    config = load_config("imagenet_paper", monkeypatch)
    assert config.model.variant == "paper"
    assert (config.model.dropout_rate, config.model.aux_dropout_rate) == (0.4, 0.7)
    assert config.optimizer.momentum == 0.9
    assert (config.optimizer.schedule, config.optimizer.decay_epochs,
            config.optimizer.decay_factor) == ("step", 8.0, 0.96)
    assert config.ema_decay > 0 and config.aux_weight == 0.3
    assert config.augment.photometric and config.augment.random_interpolation


def test_gpu_and_pod_configs_compute_in_bfloat16(monkeypatch):
    assert load_config("gpu", monkeypatch).model.dtype == "bfloat16"
    pod = load_config("tpu_pod", monkeypatch)
    assert (pod.model.dtype, pod.parallel) == ("bfloat16", "mesh")


def test_pod_configs_follow_their_large_batch_recipes(monkeypatch):
    # Goyal et al. 2017: SGD, 0.1 per 256 images scaled linearly, 5 warmup epochs.
    sgd = load_config("tpu_pod", monkeypatch)
    assert (sgd.batch_size, sgd.optimizer.name, sgd.optimizer.warmup_epochs) == (4096, "sgd", 5.0)
    assert optim.learning_rate(sgd) == pytest.approx(0.1 * 4096 / 256)
    # MLPerf v0.7 ResNet-50 on TPU at batch 32,768: LARS, peak 29.0, 18 warmup epochs, poly 2.
    lars = load_config("tpu_pod_lars", monkeypatch)
    assert (lars.batch_size, lars.optimizer.name, lars.optimizer.schedule) == (32768, "lars", "polynomial")
    assert optim.learning_rate(lars) == pytest.approx(29.0)
    assert (lars.optimizer.warmup_epochs, lars.optimizer.poly_power, lars.optimizer.momentum) == (18.0, 2.0, 0.929)
    assert "ResNet-50" in load_module("tpu_pod_lars", monkeypatch).__doc__  # says whose settings


def test_unknown_field_is_named(monkeypatch):
    config = load_config("demo", monkeypatch)
    config.unlock()
    config.optimizer.learning_rat = 0.1
    with pytest.raises(ConfigError, match=r"unknown config field\(s\): optimizer.learning_rat"):
        config_validation.validate_config(config)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 32.0, "config.batch_size must be int"),
    ("image_size", True, "config.image_size must be int"),
    ("parallel", "pjit", "config.parallel must be one of"),
    ("grad_reduce_dtype", "float16",
     r"config.grad_reduce_dtype must be one of \['float32', 'bfloat16'\], got 'float16'"),
    ("image_size", 8, "at least 15"),
    ("label_smoothing", 1.5, r"must be in \[0, 1\]"),
    ("eval_crop_fraction", 0.0, "config.eval_crop_fraction must be positive"),
    ("freeze_up_to", "inception6a", r"config.freeze_up_to must be '' or a backbone stage .*conv1, pool1"),
    ("profile_steps", "105-100", r"config.profile_steps must be '' \(off\), 'A' or 'A-B' .*got '105-100'"),
    ("profile_steps", "0", r"config.profile_steps must be .*got '0'"),
    ("profile_steps", "100:105", r"config.profile_steps must be .*got '100:105'"),
])
def test_wrong_types_and_values_are_rejected(monkeypatch, field, value, message):
    # type_safe=False: a hand-written config file can hold any type.
    config = ml_collections.ConfigDict(load_config("demo", monkeypatch).to_dict(), type_safe=False)
    config[field] = value
    with pytest.raises(ConfigError, match=message) as info:
        config_validation.validate_config(config)
    assert "\n" not in str(info.value)


def test_batch_must_divide_over_devices_and_processes(monkeypatch):
    config = load_config("demo", monkeypatch)
    config.batch_size, config.eval_batch_size = 64, 64
    config_validation.validate_devices(config, device_count=8, process_count=2)
    with pytest.raises(ConfigError, match="does not divide over 3 processes"):
        config_validation.validate_devices(config, device_count=6, process_count=3)
    with pytest.raises(ConfigError, match="does not divide over 6 devices"):
        config_validation.validate_devices(config, device_count=6, process_count=1)


def test_class_count_must_match_the_dataset(monkeypatch):
    config = load_config("demo", monkeypatch)
    config_validation.validate_num_classes(config, 10)
    with pytest.raises(ConfigError, match="num_classes=10 but dataset 'sklearn_digits' has 1000"):
        config_validation.validate_num_classes(config, 1000)


@pytest.mark.parametrize("field, value, message", [
    ("name", "adam", r"config.optimizer.name must be one of \['sgd', 'lars'\], got 'adam'"),
    ("trust_coefficient", 0.0, "config.optimizer.trust_coefficient must be positive"),
    ("end_learning_rate", 5.0, "end_learning_rate=5.0 is above the peak learning rate"),
])
def test_bad_optimizer_fields_are_named(monkeypatch, field, value, message):
    config = load_config("demo", monkeypatch)
    config.optimizer[field] = value
    with pytest.raises(ConfigError, match=message):
        config_validation.validate_config(config)
