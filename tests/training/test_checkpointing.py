"""Checkpoints move between topologies: 1 device <-> 8 devices under pmap and under mesh, and
pmap <-> mesh, through the trainer's own path (Parallel.get_state -> Checkpointer.save ->
Checkpointer.restore_latest onto Parallel.state_sharding -> Parallel.put_state).

The state is the TrainState of GoogLeNet's first Inception module (inception3a with its
BatchNorm statistics, SGD momentum and a Polyak average): the TrainState the trainer saves,
of a network small enough to save and restore 8 times in seconds. The reference is the state
that was saved: after the move every array must be bit for bit the same, on every device of
the new topology. (tests/commands/test_launch.py resumes a 2-process checkpoint in 1 process
with train.py itself; tests/commands/test_train_durability.py resumes whole GoogLeNet runs.)
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from googlenet_jax import parallel
from googlenet_jax.model import INCEPTION_TABLE, ConvBlock, Inception
from googlenet_jax.model.architecture import reduced_inception
from googlenet_jax.training import optim
from googlenet_jax.training.checkpointing import Checkpointer
from googlenet_jax.training.train_state import create_train_state

import helpers


@pytest.fixture(scope="module")
def state():
    """An Inception-module TrainState with momentum, a Polyak average and random values."""
    config = helpers.optimizer_config(batch_size=8, schedule="constant", warmup_epochs=0.0, momentum=0.9,
                                      nesterov=True, weight_decay=1e-4)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config, 10, 100))
    name, channels = INCEPTION_TABLE[0]
    module = Inception(reduced_inception(channels, 3), conv_block=functools.partial(ConvBlock, batch_norm=True),
                       name=name)
    fresh = create_train_state(module, tx, seed=0, image_size=8, use_ema=True)
    leaves, treedef = jax.tree.flatten(fresh)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    # Random values everywhere (momentum buffers start at zero, EMA equals params).
    leaves = [x + jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
              for x, k in zip(leaves, keys)]
    return jax.device_get(jax.tree.unflatten(treedef, leaves).replace(step=jnp.asarray(7, jnp.int32)))


def _parallel(kind, count):
    devices = jax.devices()[:count]
    return parallel.PmapParallel(devices) if kind == "pmap" else parallel.MeshParallel(devices)


MOVES = [
    (("pmap", 1), ("pmap", 8)), (("pmap", 8), ("pmap", 1)),
    (("mesh", 1), ("mesh", 8)), (("mesh", 8), ("mesh", 1)),
    (("pmap", 8), ("mesh", 8)), (("mesh", 8), ("pmap", 8)),
    (("pmap", 2), ("mesh", 4)), (("mesh", 4), ("pmap", 2)),
]


@pytest.mark.parametrize("saved_on, resumed_on", MOVES,
                         ids=[f"{a[0]}{a[1]}-to-{b[0]}{b[1]}" for a, b in MOVES])
def test_a_checkpoint_resumes_on_another_topology(state, saved_on, resumed_on, tmp_path):
    writer = _parallel(*saved_on)
    checkpointer = Checkpointer(str(tmp_path), every_steps=1, keep=2)
    checkpointer.save(7, writer.get_state(writer.put_state(state)), force=True)
    checkpointer.wait()
    checkpointer.close()

    reader = _parallel(*resumed_on)
    abstract = jax.eval_shape(lambda: state)
    resumer = Checkpointer(str(tmp_path), every_steps=1, keep=2)
    restored = resumer.restore_latest(abstract, reader.state_sharding(abstract))
    resumer.close()
    placed = reader.put_state(restored)

    expected = jax.tree_util.tree_leaves_with_path(state)
    got = jax.tree.leaves(placed)
    assert len(got) == len(expected)
    for (path, want), array in zip(expected, got):
        name = jax.tree_util.keystr(path)
        assert {s.device for s in array.addressable_shards} == set(reader.devices), name
        for shard in array.addressable_shards:  # every device holds the whole saved value
            value = np.asarray(shard.data)
            value = value.reshape(value.shape[1:]) if resumed_on[0] == "pmap" else value
            np.testing.assert_array_equal(value, want, err_msg=name)
