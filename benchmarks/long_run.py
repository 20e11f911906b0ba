"""Host and device memory over a long run with frequent checkpoints and evaluations.

    python benchmarks/long_run.py [--steps 400] [--checkpoint_every 20] [--eval_every 50]
                                  [--image_size 32] [--json OUT.json]

Runs `train.py` on the embedded digits in a subprocess (whatever device is present) and
reads the memory the trainer logs at every log step into TensorBoard: `host_rss_mb` (the
process's resident memory) and, where the backend reports it, `device_memory_mb`. It also
samples the process's VmRSS from /proc twice a second as an outside check. Reports the
memory after warm-up (a quarter of the run, with the first checkpoint and evaluation done)
and at the end, and the growth per 100 steps from a least-squares line over the steps after
warm-up: flat memory means a growth within noise (a few MB per 100 steps at most).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def read_scalars(workdir: str, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the run's TensorBoard event files."""
    import tensorflow as tf
    series = {tag: [] for tag in tags}
    for path in sorted(pathlib.Path(workdir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag in series:
                    series[value.tag].append((event.step, float(tf.make_ndarray(value.tensor))))
    return series


def growth_per_100_steps(points: list[tuple[int, float]], after_step: int) -> float | None:
    """Slope of a least-squares line through the points after `after_step`, per 100 steps."""
    points = [(s, v) for s, v in points if s > after_step]
    if len(points) < 3:
        return None
    steps, values = np.array(points, dtype=np.float64).T
    return float(np.polyfit(steps, values, 1)[0] * 100)


def sample_rss(pid: int, samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            samples.append((time.time(), kb / 1024))
        except (OSError, StopIteration):
            pass
        stop.wait(0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--checkpoint_every", type=int, default=20)
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--warmup_steps", type=int, help="steps left out of the growth fit (default: a "
                        "quarter of the run, and at least one checkpoint and one evaluation)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        workdir = os.path.join(root, "run")
        command = [sys.executable, "train.py", f"--config.num_train_steps={args.steps}",
                   f"--config.checkpoint_every_steps={args.checkpoint_every}",
                   f"--config.eval_every_steps={args.eval_every}", f"--config.log_every_steps={args.log_every}",
                   f"--config.image_size={args.image_size}", "--config.keep_checkpoints=2",
                   f"--config.data_dir={os.path.join(root, 'data')}", "--workdir", workdir]
        start = time.time()
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, stop), daemon=True)
        sampler.start()
        _, stderr = proc.communicate()
        stop.set()
        sampler.join()
        if proc.returncode:
            print(stderr[-3000:], file=sys.stderr)
            return proc.returncode
        series = read_scalars(workdir, ("host_rss_mb", "device_memory_mb"))

    warmup = args.warmup_steps
    if warmup is None:
        firsts = [every for every in (args.checkpoint_every, args.eval_every) if 0 < every <= args.steps]
        warmup = max([args.steps // 4, *firsts])
    report = {"steps": args.steps, "checkpoint_every": args.checkpoint_every, "eval_every": args.eval_every,
              "image_size": args.image_size, "wall_s": time.time() - start, "warmup_step": warmup}
    for tag, points in series.items():
        if not points:
            continue
        after = [v for s, v in points if s > warmup]
        report[tag] = {"after_warmup": after[0] if after else None, "end": points[-1][1],
                       "peak": max(v for _, v in points),
                       "growth_per_100_steps": growth_per_100_steps(points, warmup),
                       "series": points}
    report["proc_vmrss_peak_mb"] = max((mb for _, mb in samples), default=None)
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "series"} if isinstance(v, dict) else v)
                      for k, v in report.items()}, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
