"""Where train.py's start-up goes: a 1-step run under cProfile, its time split by phase.

    python benchmarks/startup.py [--cache DIR] [--json OUT] [-- TRAIN.PY FLAGS...]

Runs `python train.py --config.num_train_steps=1 FLAGS` (configs/demo.py by default) in a fresh
process under cProfile, with JAX's persistent compilation cache in DIR (a new empty folder by
default: a cold start; pass the same DIR twice to see a warm one), and prints the cumulative
seconds of each phase, read off the profile by the functions that do the work. The phases
overlap where one calls another (the initial state is traced, lowered and compiled like the
steps), so they do not add up to the total.
"""
from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# phase -> (file path suffix, function name): the outermost calls that do the phase's work.
PHASES = {
    "imports": ("<frozen importlib._bootstrap>", "_find_and_load"),
    "dataset info (tfds)": ("googlenet_jax/training/trainer.py", "_dataset_info"),
    "train batches (tf.data)": ("googlenet_jax/data/pipeline.py", "train_batches"),
    "eval batches (tf.data)": ("googlenet_jax/data/pipeline.py", "eval_batches"),
    "initial state": ("googlenet_jax/training/train_state.py", "create_train_state"),
    "tracing (jaxprs)": ("jax/_src/interpreters/partial_eval.py", "trace_to_jaxpr"),
    "lowering (StableHLO)": ("jax/_src/interpreters/mlir.py", "lower_jaxpr_to_module"),
    "compiling or reading the cache": ("jax/_src/compiler.py", "compile_or_get_cached"),
    "the run in all": ("googlenet_jax/training/trainer.py", "train_and_evaluate"),
}


def phase_seconds(stats: pstats.Stats) -> dict[str, float]:
    """{phase: cumulative seconds} from a profile (0.0 for a phase that did not run)."""
    found = dict.fromkeys(PHASES, 0.0)
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for phase, (suffix, function) in PHASES.items():
            if name == function and path.endswith(suffix):
                found[phase] += cumulative
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="JAX's persistent compilation cache folder (default: a new empty one)")
    parser.add_argument("--json", help="also write {phase: seconds} here")
    parser.add_argument("flags", nargs="*", help="train.py flags, after --")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="startup_")
    profile = os.path.join(scratch, "train.prof")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=args.cache or os.path.join(scratch, "cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    command = [sys.executable, "-m", "cProfile", "-o", profile, "train.py", "--config.num_train_steps=1",
               "--workdir", os.path.join(scratch, "workdir"), *args.flags]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    first_step = next((line for line in proc.stdout.splitlines() if line.startswith("first step")), "")
    seconds = phase_seconds(pstats.Stats(profile))
    for phase, value in seconds.items():
        print(f"{phase:32s} {value:7.1f} s")
    print(first_step)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(seconds, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
