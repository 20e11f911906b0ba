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

import sys

from googlenet_jax.commands import common


def parse_args(argv):
    parser = common.ArgumentParser("launch", __doc__, usage="%(prog)s --num_processes N [options] -- COMMAND [ARG ...]")
    parser.add_argument("--num_processes", type=int, required=True, help="processes to start")
    parser.add_argument("--devices_per_process", type=int, default=None,
                        help="fake CPU devices per process (JAX_NUM_CPU_DEVICES); default: the real devices")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--grace_seconds", type=float, default=30.0,
                        help="how long the others get to stop after one fails (default 30)")
    if "--" not in argv:
        parser.parse_known_args(argv)  # --help, or the required flags' errors
        parser.error("give the command after --, e.g. -- python train.py ...")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if not command:
        parser.error("no command after --")
    parser.check_positive("--num_processes", args.num_processes)
    parser.check_positive("--devices_per_process", args.devices_per_process)
    return args, command


def main(argv=None) -> int:
    args, command = parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        from googlenet_jax.training import launcher  # after parsing: keeps --help instant

        try:
            return launcher.run(command, num_processes=args.num_processes,
                                devices_per_process=args.devices_per_process, port=args.port,
                                grace_seconds=args.grace_seconds)
        except FileNotFoundError as error:
            raise common.UsageError(f"cannot start {command[0]!r}: {error.strerror}") from None

    return common.run("launch", body)


if __name__ == "__main__":
    sys.exit(main())
