"""Which processes form a run: config flags, then the environment, then JAX's own detection."""
import pytest
from ml_collections import ConfigDict

from googlenet_jax.training.config import ConfigError
from googlenet_jax.training.distributed import process_setup


def _config(**fields):
    config = ConfigDict({"distributed": False, "coordinator_address": None, "num_processes": None,
                         "process_id": None})
    config.update(fields)
    return config


FLAGS = dict(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)
ENV = {"JAX_COORDINATOR_ADDRESS": "10.0.0.9:99", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}


def test_one_process_when_nothing_asks_for_more():
    assert process_setup(_config(), environ={}) is None
    # JAX reads JAX_COORDINATOR_ADDRESS alone itself; it does not make a multi-process run here.
    assert process_setup(_config(), environ={"JAX_COORDINATOR_ADDRESS": "h:1"}) is None


def test_config_flags_win_over_the_environment():
    assert process_setup(_config(**FLAGS), environ=ENV) == FLAGS


def test_the_environment_is_read_when_the_flags_are_absent():
    assert process_setup(_config(), environ=ENV) == dict(
        coordinator_address="10.0.0.9:99", num_processes=4, process_id=3)


def test_distributed_alone_leaves_it_to_jax_cluster_detection():
    assert process_setup(_config(distributed=True), environ={}) == {}


@pytest.mark.parametrize("fields, environ, message", [
    (dict(coordinator_address="h:1", num_processes=2), {}, "--config set coordinator_address, "
     "num_processes but not process_id: give all three"),
    (dict(coordinator_address="nohost", num_processes=2, process_id=0), {}, "must be HOST:PORT"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2), {}, "process_id 2 is not in [0, "
     "num_processes=2)"),
    ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "x", "JAX_COORDINATOR_ADDRESS": "h:1"},
     "num_processes and process_id must be integers"),
    ({}, {"JAX_NUM_PROCESSES": "2"}, "but not coordinator_address, process_id"),
])
def test_a_half_given_setup_is_a_one_line_error(fields, environ, message):
    with pytest.raises(ConfigError) as error:
        process_setup(_config(**fields), environ=environ)
    assert message in str(error.value) and "\n" not in str(error.value)
