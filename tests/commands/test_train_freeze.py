"""config.freeze_up_to: fine-tuning from a torchvision .pth with a frozen backbone, end to end.

conftest's `finetuned_workdir` trains 2 steps at learning rate 0.1 with weight decay and Polyak
averaging, from the session's random torchvision .pth onto the 3-class photo folder, frozen up
to inception4e. The reference is the .pth itself: every parameter and BatchNorm statistic of
conv1 ... inception4e must come out bit for bit as the .pth has it (in the average too), and
everything after them (5a, 5b, the aux heads) must have moved.
"""
import numpy as np
import pytest
from flax import traverse_util

from googlenet_jax.model import backbone_stages
from googlenet_jax.weights.files import restore_as_numpy
from googlenet_jax.weights.torch_layout import torchvision_to_flax

import helpers

pytestmark = pytest.mark.slow  # a train.py run

FROZEN = backbone_stages()[:backbone_stages().index(helpers.FREEZE_UP_TO) + 1]
FROZEN_BLOCKS = 3 + 6 * 7  # conv1-3, and 6 convolution blocks in each of 3a ... 4e


@pytest.fixture(scope="module")
def run(finetuned_workdir, torchvision_pth):
    state = restore_as_numpy(f"{finetuned_workdir[0]}/checkpoints/2/default")
    return state, torchvision_to_flax(helpers.state_dict_numpy(torchvision_pth[1]))


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


@pytest.mark.parametrize("part,source,per_block", [
    ("params", "params", 3), ("ema_params", "params", 3), ("batch_stats", "batch_stats", 2)])
def test_frozen_stages_are_the_pth_bit_for_bit(run, part, source, per_block):
    state, pth = run
    got, want = _flat(state[part]), _flat(pth[source])
    frozen = [name for name in got if name.split("/")[0] in FROZEN]
    assert len(frozen) == FROZEN_BLOCKS * per_block  # kernel, BN scale and offset; or mean and var
    for name in frozen:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{part}/{name}")


@pytest.mark.parametrize("part,source", [("params", "params"), ("batch_stats", "batch_stats")])
def test_the_stages_after_them_and_the_heads_move(run, part, source):
    state, pth = run
    got, want = _flat(state[part]), _flat(pth[source])
    trained = [name for name in got if name.split("/")[0] not in FROZEN]
    assert {name.split("/")[0] for name in trained} >= {"inception5a", "inception5b", "aux1", "aux2"}
    for name in trained:
        if got[name].shape == want[name].shape:  # the 3-class classifiers are fresh anyway
            assert not np.array_equal(got[name], want[name]), f"{part}/{name} did not move"
