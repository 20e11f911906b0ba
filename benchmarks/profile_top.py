"""Where a profiled step's time goes: the top operations of a `config.profile_steps` trace.

    python benchmarks/profile_top.py WORKDIR [--top 20] [--plane GPU]

Reads the newest WORKDIR/plugins/profile/<time>/*.xplane.pb (what train.py writes with
`--config.profile_steps=A-B` and benchmarks/bench.py with `--profile`; TensorBoard's profile
plugin reads the same files) with jax.profiler's own reader, so JAX alone is needed, and prints,
per device plane whose name contains `--plane` (e.g. "/device:GPU:0"), the operations with the
most total time: their share of the plane's event time, total milliseconds and count. On a GPU
or TPU plane only its "XLA Ops" line is read (one event per HLO op, none nested). Events are
summed by name, so an op run once per step counts once per profiled step.
"""
import argparse
import collections
import pathlib
import sys


def read_space(workdir: pathlib.Path):
    runs = sorted((workdir / "plugins" / "profile").glob("*/"))
    if not runs:
        sys.exit(f"profile_top: error: no {workdir}/plugins/profile/<time>/ folder "
                 "(was train.py's profile_steps or bench.py's --profile set?)")
    from jax.profiler import ProfileData  # XLA's XSpace reader: no TensorFlow needed

    files = sorted(runs[-1].glob("*.xplane.pb"))
    if not files:
        sys.exit(f"profile_top: error: {runs[-1]} holds no .xplane.pb file")
    return runs[-1], [ProfileData.from_file(str(path)) for path in files]


def op_times(lines):
    """({event name: total nanoseconds}, {event name: count}) of one plane's lines: its "XLA Ops"
    line where it has one (a GPU's or TPU's, one event per HLO op), else every line (nested
    events then count within their parents too)."""
    totals, counts = collections.Counter(), collections.Counter()
    for line in [line for line in lines if line.name == "XLA Ops"] or lines:
        for event in line.events:
            totals[event.name] += event.duration_ns
            counts[event.name] += 1
    return totals, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--plane", default="/device:", help="print the planes whose name contains this")
    args = parser.parse_args()
    run, spaces = read_space(args.workdir)
    print(f"{run}")
    shown = 0
    for space in spaces:
        for plane in space.planes:
            lines = list(plane.lines)
            if args.plane not in plane.name or not lines:
                continue
            totals, counts = op_times(lines)
            busy = sum(totals.values()) or 1
            print(f"\n{plane.name}: {busy / 1e6:.1f} ms of events in {len(lines)} line(s)")
            for name, ns in totals.most_common(args.top):
                print(f"  {100 * ns / busy:5.1f}%  {ns / 1e6:9.2f} ms  x{counts[name]:<5d} {name[:100]}")
            shown += 1
    if not shown:
        names = sorted({plane.name for space in spaces for plane in space.planes})
        print(f"no plane matches {args.plane!r}; planes: {', '.join(names)}")


if __name__ == "__main__":
    main()
