"""The largest batch that fits a TPU chip (googlenet_jax/training/tpu_fit.py), found from
memory figures of a known shape in a few measurements; no compiling, no libtpu. The compiled
reports themselves are tested in test_tpu_compile.py."""
import pytest

from googlenet_jax.training import tpu_fit


@pytest.mark.parametrize("fixed, per_image, padding, start", [
    (3e9, 20e6, 1, 128),  # linear: exact, searching upwards
    (3e9, 20e6, 1, 4096),  # linear: exact, searching downwards
    (1e9, 7.3e6, 8, 8),  # in steps of 8 images, as TPU pads the batch
    (0.5e9, 55e6, 16, 1024),
    (17e9, 1e6, 1, 64),  # nothing fits
])
def test_max_batch_search_finds_the_largest_fitting_batch_in_few_compiles(fixed, per_image, padding, start):
    capacity = 16 * 2**30
    measured = []

    def total(batch):
        return int(fixed + per_image * -(-batch // padding) * padding)

    def measure(batch):
        measured.append(batch)
        return total(batch), total(batch) <= capacity

    best, fails, _ = tpu_fit.largest_fitting(measure, start, total(start), total(start) <= capacity, capacity)
    truth = max((b for b in range(1, 20000) if total(b) <= capacity), default=0)
    assert len(measured) <= tpu_fit.MAX_BATCH_COMPILES, measured
    assert best <= truth and (fails is None or fails > truth), (best, fails, truth)
    if padding == 1:
        assert (best, fails) == (truth, truth + 1), (best, fails, truth, measured)
    else:  # within 10% (a step or two of the padding) after four compiles
        assert best >= 0.9 * truth, (best, truth, measured)
