"""benchmarks/profile_top.py, which sums the profile of a GPU run: read against a trace whose
events' durations are known (host-side annotations around sleeps), in a process where
TensorFlow cannot be imported, as on a GPU image that has JAX but no TensorFlow."""
import os
import subprocess
import sys
import time

import jax

import helpers

SCRIPT = os.path.join(helpers.REPO, "benchmarks", "profile_top.py")
# Runs profile_top.py with TensorFlow and tensorflow-datasets made unimportable.
WITHOUT_TENSORFLOW = (
    "import runpy, sys; sys.modules.update(tensorflow=None, tensorflow_datasets=None); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _profile_top(*args):
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, SCRIPT, *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _row(output, name):
    """(share %, milliseconds, count) of the row naming `name`."""
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[-1] == name:
            return float(fields[0].rstrip("%")), float(fields[1]), int(fields[3].lstrip("x"))
    raise AssertionError(f"no row for {name} in:\n{output}")


def test_profile_top_sums_events_by_name_without_tensorflow(tmp_path):
    with jax.profiler.trace(str(tmp_path)):
        for seconds in (0.06, 0.06, 0.06, 0.02):  # 180 ms in three events, then 20 ms in one
            with jax.profiler.TraceAnnotation("long_wait" if seconds > 0.05 else "short_wait"):
                time.sleep(seconds)

    result = _profile_top(tmp_path, "--plane", "/host:CPU", "--top", "50")

    assert result.returncode == 0, result.stderr
    share, total_ms, count = _row(result.stdout, "long_wait")
    assert count == 3 and 180 <= total_ms < 260
    short_share, short_ms, short_count = _row(result.stdout, "short_wait")
    assert short_count == 1 and 20 <= short_ms < 60
    assert share > 2 * short_share  # shares of the same plane's event time
    lines = result.stdout.splitlines()
    assert lines.index(next(line for line in lines if line.endswith("long_wait"))) < \
        lines.index(next(line for line in lines if line.endswith("short_wait")))  # the longest first


def test_profile_top_names_what_is_missing(tmp_path):
    result = _profile_top(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"profile_top: error: no {tmp_path}/plugins/profile/<time>/ folder "
                                     "(was train.py's profile_steps or bench.py's --profile set?)")
