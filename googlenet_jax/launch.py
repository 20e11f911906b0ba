"""Starts one command as N local JAX processes: the multi-host code path on one machine.

    python -m googlenet_jax.launch --num_processes 2 --devices_per_process 2 -- \\
        python train.py --config.parallel=mesh ...

Each process gets JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT (a free port unless --port),
JAX_NUM_PROCESSES and JAX_PROCESS_ID, which train.py reads (training/distributed.py), and
with --devices_per_process also JAX_NUM_CPU_DEVICES (fake CPU devices; CPU collectives
run over gloo). Output passes through; train.py prefixes its lines with [process I/N].

When one process fails, the launcher stops the others (SIGTERM, then SIGKILL after
--grace_seconds) and exits with the failed process's status, so a broken run never
waits on a collective. SIGINT and SIGTERM sent to the launcher go to every process (train.py
then saves a checkpoint and stops).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    """A TCP port nobody listens on now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_environment(index: int, *, num_processes: int, port: int,
                        devices_per_process: int | None, base: dict[str, str]) -> dict[str, str]:
    env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(num_processes),
               JAX_PROCESS_ID=str(index))
    if devices_per_process is not None:
        env["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)  # wins over XLA_FLAGS' device count
    return env


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
    processes = [subprocess.Popen(command, env=process_environment(
        i, num_processes=num_processes, port=port, devices_per_process=devices_per_process,
        base=dict(os.environ))) for i in range(num_processes)]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m googlenet_jax.launch", description=__doc__.split("\n\n")[0],
        usage="%(prog)s --num_processes N [options] -- COMMAND [ARG ...]")
    parser.add_argument("--num_processes", type=int, required=True, help="processes to start")
    parser.add_argument("--devices_per_process", type=int, default=None,
                        help="fake CPU devices per process (JAX_NUM_CPU_DEVICES); default: the real devices")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--grace_seconds", type=float, default=30.0,
                        help="how long the others get to stop after one fails (default 30)")
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        parser.error("give the command after --, e.g. -- python train.py ...")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if not command:
        parser.error("no command after --")
    if args.num_processes < 1:
        parser.error(f"--num_processes must be at least 1, got {args.num_processes}")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        parser.error(f"--devices_per_process must be at least 1, got {args.devices_per_process}")
    try:
        return run(command, num_processes=args.num_processes, devices_per_process=args.devices_per_process,
                   port=args.port, grace_seconds=args.grace_seconds)
    except FileNotFoundError as e:
        parser.exit(2, f"launch: error: cannot start {command[0]!r}: {e.strerror}\n")


if __name__ == "__main__":
    sys.exit(main())
