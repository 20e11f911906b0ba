"""Multi-process set-up: which processes form the run, from the config, the environment or JAX.

In order of precedence:
1. `--config.coordinator_address=HOST:PORT --config.num_processes=N --config.process_id=I`;
2. `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` in the environment;
3. `config.distributed=True` alone: JAX's own cluster detection (Cloud TPU, SLURM, Open MPI).
With none of these the run is one process. Several processes need `config.parallel="mesh"`.
`python -m googlenet_jax.launch` starts local processes with the environment of (2), which
`process_environment` writes.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax

from googlenet_jax.errors import first_line
from googlenet_jax.training.config import ConfigError

FIELDS = ("coordinator_address", "num_processes", "process_id")
# The environment contract: each field's variable (JAX itself reads JAX_COORDINATOR_ADDRESS too).
ENVIRONMENT = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
               "process_id": "JAX_PROCESS_ID"}
CPU_DEVICES = "JAX_NUM_CPU_DEVICES"  # fake CPU devices per process (wins over XLA_FLAGS' count)


def process_environment(index: int, *, num_processes: int, coordinator_address: str,
                        devices_per_process: int | None, base: dict[str, str]) -> dict[str, str]:
    """`base` plus the variables that make a process join as process `index` of `num_processes`."""
    env = dict(base, **{ENVIRONMENT["coordinator_address"]: coordinator_address,
                        ENVIRONMENT["num_processes"]: str(num_processes), ENVIRONMENT["process_id"]: str(index)})
    if devices_per_process is not None:
        env[CPU_DEVICES] = str(devices_per_process)
    return env


def _complete(values: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [name for name in FIELDS if values.get(name) in (None, "")]
    if missing:
        raise ConfigError(f"{where} set {', '.join(n for n in FIELDS if n not in missing)} but not "
                          f"{', '.join(missing)}: give all three")
    address = str(values["coordinator_address"])
    if ":" not in address:
        raise ConfigError(f"{where}: coordinator address {address!r} must be HOST:PORT")
    try:
        count, index = int(values["num_processes"]), int(values["process_id"])
    except ValueError:
        raise ConfigError(f"{where}: num_processes and process_id must be integers, got "
                          f"{values['num_processes']!r} and {values['process_id']!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"{where}: process_id {index} is not in [0, num_processes={count})")
    return {"coordinator_address": address, "num_processes": count, "process_id": index}


def process_setup(config: Any, environ: Optional[dict[str, str]] = None) -> Optional[dict[str, Any]]:
    """Keyword arguments for `jax.distributed.initialize`, {} for JAX's cluster detection, or
    None for a single-process run. Raises ConfigError (one line) for a half-given set-up."""
    environ = os.environ if environ is None else environ
    given = {name: config[name] for name in FIELDS if config[name] is not None}
    if given:
        return _complete(given, "--config")
    from_env = {name: environ[var] for name, var in ENVIRONMENT.items() if environ.get(var)}
    # JAX reads JAX_COORDINATOR_ADDRESS by itself during cluster detection; the set counts as
    # ours only when the process count or index is there too.
    if set(from_env) - {"coordinator_address"}:
        return _complete(from_env, "the environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
                                   "JAX_PROCESS_ID)")
    return {} if config.distributed else None


def initialize(config: Any) -> None:
    """Starts `jax.distributed` when the config or environment asks for several processes.

    `config.heartbeat_timeout_seconds` bounds how long the others wait for a process that
    died before they stop with an error (instead of hanging in a collective).
    """
    setup = process_setup(config)
    if setup is None or jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(**setup, heartbeat_timeout_seconds=config.heartbeat_timeout_seconds)
    except Exception as e:  # noqa: BLE001  (timeouts, refused connections, bad cluster environments)
        where = (f"process {setup['process_id']} of {setup['num_processes']} at {setup['coordinator_address']}"
                 if setup else "the cluster JAX detected")
        raise ConfigError(f"cannot join the multi-process run as {where}: {first_line(e)}") from e
