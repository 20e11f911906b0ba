"""What train_and_evaluate does with the workdir and the config around its steps."""
import json

import pytest

from googlenet_jax.training import trainer
from googlenet_jax.training.config import ConfigError, default_config


def _workdir_of_an_older_run(tmp_path, config, *, lacking):
    """A workdir holding checkpoint step 8 and the config.json of `config` written before the
    dotted field `lacking` existed."""
    saved = json.loads(config.to_json())
    *parents, leaf = lacking.split(".")
    section = saved
    for part in parents:
        section = section[part]
    del section[leaf]
    (tmp_path / "checkpoints" / "8").mkdir(parents=True)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    return str(tmp_path)


def test_a_workdir_whose_config_predates_a_field_holds_that_fields_default(tmp_path):
    """A config.json written before freeze_up_to existed is a run that froze nothing (the
    default ""): the same config resumes there, one that freezes a stage is another run, named."""
    config = default_config()
    workdir = _workdir_of_an_older_run(tmp_path, config, lacking="freeze_up_to")
    trainer.check_workdir(config, workdir)  # resumes: no error
    config.freeze_up_to = "inception3a"
    with pytest.raises(ConfigError, match=r"holds checkpoints of another run \(freeze_up_to='' there, "
                                          r"'inception3a' here\)"):
        trainer.check_workdir(config, workdir)


def test_a_workdir_whose_config_predates_grad_reduce_dtype_resumes_with_either_value(tmp_path):
    """How gradients are summed over the devices is not what a run is: an older config.json
    without the field resumes, in float32 or in bfloat16."""
    config = default_config()
    workdir = _workdir_of_an_older_run(tmp_path, config, lacking="grad_reduce_dtype")
    for reduce_dtype in ("float32", "bfloat16"):
        config.grad_reduce_dtype = reduce_dtype
        trainer.check_workdir(config, workdir)  # resumes: no error


def test_every_model_field_is_part_of_the_run_but_the_compute_ones(tmp_path):
    """A model field (one added later too) changes what the checkpoints hold: another value is
    another run. A workdir from before inception_block existed holds reduced modules; dtype,
    the dropout rates and bn_running_var may change on resume."""
    config = default_config()
    workdir = _workdir_of_an_older_run(tmp_path, config, lacking="model.inception_block")
    config.model.dtype, config.model.aux_dropout_rate, config.model.bn_running_var = "bfloat16", 0.5, "unbiased"
    trainer.check_workdir(config, workdir)  # resumes: no error
    config.model.inception_block = "naive"
    config.model.width_multiplier = 0.5
    with pytest.raises(ConfigError, match=r"model.inception_block='reduced' there, 'naive' here; "
                                          r"model.width_multiplier=1.0 there, 0.5 here\)"):
        trainer.check_workdir(config, workdir)
