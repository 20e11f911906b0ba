"""Every device, mesh and sharding decision lives here (training, evaluation, the classifier).

Two ways to run pure per-batch steps (training/steps.py, evaluation.py), picked by
`config.parallel`:

- "pmap": `jax.pmap` over this host's devices with axis name "batch". The state is
  replicated with a leading device axis; each host batch is reshaped to
  (devices, batch/devices, ...). Single process.
- "mesh": `jax.jit` over a 1-D `jax.sharding.Mesh` of all devices of all processes, axis
  "batch", with global `jax.Array`s: the state replicated, batches sharded on their first
  axis (each process contributes its host-local slice).

Both run the train step per device (the mesh inside `jax.shard_map`) with axis name "batch":
the step averages gradients and metrics over it, and the model's `bn_axis_name` ("batch")
BatchNorm statistics. The collectives are the step's own, so the gradients are summed in the
dtype the step asks for (float32 by default; left to XLA's partitioner, the sum over a
bfloat16 network's batch ran in bfloat16). Both donate the state to the train step.
"""
from __future__ import annotations

import collections
import functools
import itertools
from typing import Any, Callable, Iterator, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS_NAME = "batch"
KINDS = ("pmap", "mesh")  # config.parallel
GRAD_REDUCE_DTYPES = ("float32", "bfloat16")  # config.grad_reduce_dtype (training/steps.py)

# step_fn(state, batch, *, axis_name) -> (state, metrics); eval_fn(state, batch, *, axis_name).
StepFn = Callable[..., Any]


class PmapParallel:
    """jax.pmap over the local devices (axis "batch"); one process only."""

    bn_axis_name: Optional[str] = AXIS_NAME

    def __init__(self, devices: Optional[list[jax.Device]] = None):
        self.devices = list(devices or jax.local_devices())
        self._sharding = NamedSharding(Mesh(np.array(self.devices), (AXIS_NAME,)), P(AXIS_NAME))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def compile_train_step(self, step_fn: StepFn) -> Callable[[Any, Any], tuple[Any, Any]]:
        return jax.pmap(functools.partial(step_fn, axis_name=AXIS_NAME), axis_name=AXIS_NAME,
                        devices=self.devices, donate_argnums=(0,))

    def compile_eval_step(self, eval_fn: StepFn) -> Callable[[Any, Any], Any]:
        return jax.pmap(functools.partial(eval_fn, axis_name=AXIS_NAME), axis_name=AXIS_NAME,
                        devices=self.devices)

    def put_state(self, state: Any) -> Any:
        """Replicates a single-copy state: every leaf gets a leading device axis."""
        n = self.num_devices
        return jax.device_put(
            jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), state),
            self._sharding)

    def get_state(self, state: Any) -> Any:
        """One copy of a replicated state (on the first device), e.g. to checkpoint."""
        return jax.tree.map(lambda x: x.addressable_shards[0].data[0], state)

    def state_sharding(self, abstract_state: Any) -> Any:
        """Where restored checkpoints go before `put_state` replicates them."""
        one = jax.sharding.SingleDeviceSharding(self.devices[0])
        return jax.tree.map(lambda _: one, abstract_state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Host batch (B, ...) -> (devices, B / devices, ...) sharded over the devices."""
        n = self.num_devices

        def put(x):
            x = np.asarray(x)
            if x.shape[0] % n:
                raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices")
            return jax.device_put(x.reshape((n, x.shape[0] // n) + x.shape[1:]), self._sharding)

        return jax.tree.map(put, batch)

    def metrics_to_host(self, metrics: Any) -> dict[str, float]:
        """Replicated per-device metrics -> Python floats (waits for the step)."""
        return {k: float(np.asarray(v.addressable_shards[0].data).reshape(-1)[0])
                for k, v in metrics.items()}


class MeshParallel:
    """jax.jit over a global device mesh (axis "batch") with global jax.Arrays; the train step
    runs per device inside jax.shard_map."""

    bn_axis_name: Optional[str] = AXIS_NAME

    def __init__(self, devices: Optional[list[jax.Device]] = None):
        self.devices = list(devices or jax.devices())
        self.mesh = Mesh(np.array(self.devices), (AXIS_NAME,))
        self._replicated = NamedSharding(self.mesh, P())
        self._batch_sharding = NamedSharding(self.mesh, P(AXIS_NAME))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def compile_train_step(self, step_fn: StepFn) -> Callable[[Any, Any], tuple[Any, Any]]:
        # check_vma=False: every value is per device, as under pmap. With it, JAX would sum the
        # gradient of each replicated parameter where it meets the batch, in the compute dtype.
        per_device = jax.shard_map(functools.partial(step_fn, axis_name=AXIS_NAME), mesh=self.mesh,
                                   in_specs=(P(), P(AXIS_NAME)), out_specs=(P(), P()), check_vma=False)
        return jax.jit(per_device, in_shardings=(self._replicated, self._batch_sharding),
                       out_shardings=(self._replicated, self._replicated),
                       donate_argnums=(0,))

    def compile_eval_step(self, eval_fn: StepFn) -> Callable[[Any, Any], Any]:
        return jax.jit(functools.partial(eval_fn, axis_name=None),
                       in_shardings=(self._replicated, self._batch_sharding),
                       out_shardings=self._replicated)

    def put_state(self, state: Any) -> Any:
        """Replicates the state over the mesh (every process passes the same values)."""
        return jax.device_put(state, self._replicated)

    def get_state(self, state: Any) -> Any:
        """The replicated global state itself (orbax saves global arrays)."""
        return state

    def state_sharding(self, abstract_state: Any) -> Any:
        return jax.tree.map(lambda _: self._replicated, abstract_state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows of the global batch -> global arrays sharded on axis 0."""
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self._batch_sharding, np.asarray(x)),
            batch)

    def metrics_to_host(self, metrics: Any) -> dict[str, float]:
        return {k: float(np.asarray(v.addressable_shards[0].data)) for k, v in metrics.items()}


Parallel = PmapParallel | MeshParallel


def create_parallel(kind: str) -> Parallel:
    """"pmap" or "mesh" (config.parallel)."""
    if kind == "pmap":
        return PmapParallel()
    if kind == "mesh":
        return MeshParallel()
    raise ValueError(f"unknown parallel kind {kind!r}; expected one of {KINDS}")


def prefetch_to_device(batches: Iterator[Any], put_batch: Callable[[Any], Any],
                       size: int = 2) -> Iterator[Any]:
    """Keeps `size` batches already on their way to the devices (transfers are async)."""
    queue = collections.deque()

    def enqueue(n):
        for batch in itertools.islice(batches, n):
            queue.append(put_batch(batch))

    enqueue(size)
    while queue:
        yield queue.popleft()
        enqueue(1)
