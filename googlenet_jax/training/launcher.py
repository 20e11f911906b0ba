"""One command as N local JAX processes: the multi-host path on one machine (python -m googlenet_jax.launch).

Each process gets the environment of distributed.process_environment (coordinator
127.0.0.1:PORT, process count and index; with devices_per_process, fake CPU devices). When
one process fails the others are stopped (SIGTERM, then SIGKILL after grace_seconds) and
`run` returns the failed process's status, so a broken run never waits on a collective.
SIGINT and SIGTERM sent to this process go to every child.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from googlenet_jax.training import distributed


def free_port() -> int:
    """A TCP port nobody listens on now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(message: str) -> None:
    print(f"launch: {message}", file=sys.stderr, flush=True)


def _exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def stop(processes: list[subprocess.Popen], grace_seconds: float) -> None:
    """SIGTERM to every running process, SIGKILL to those still running after the grace time."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for p in processes:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(command: list[str], *, num_processes: int, devices_per_process: int | None = None,
        port: int | None = None, grace_seconds: float = 30.0) -> int:
    """Runs `command` as `num_processes` processes; returns the exit status (0 when all succeed)."""
    port = port or free_port()
    processes = [subprocess.Popen(command, env=distributed.process_environment(
        i, num_processes=num_processes, coordinator_address=f"127.0.0.1:{port}",
        devices_per_process=devices_per_process, base=dict(os.environ))) for i in range(num_processes)]

    forwarded = []

    def forward(signum, frame):
        del frame
        forwarded.append(signum)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [p.poll() for p in processes]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                index, code = failed[0]
                if not forwarded:
                    _log(f"process {index} {_describe(code)}; stopping the others")
                stop(processes, grace_seconds)
                return _exit_status(code)
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    finally:
        stop(processes, 0.0 if not forwarded else grace_seconds)
        for s, handler in previous.items():
            signal.signal(s, handler)
