"""What a multi-crop evaluation computes, written out by hand in numpy."""
import jax
import jax.numpy as jnp
import numpy as np

from googlenet_jax import evaluation

import helpers
from helpers import softmax

CLASSES, SIZE = 5, 4


def test_multi_crop_logits_are_the_log_of_the_mean_softmax_over_crops():
    model = helpers.Linear(CLASSES)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
    rng = np.random.RandomState(1)
    images = (3 * rng.randn(2, 10, SIZE, SIZE, 3)).astype(np.float32)  # 10 crops of 2 images
    w = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
    b = np.asarray(variables["params"]["fc"]["bias"], np.float64)
    probs = softmax(images.reshape(20, -1).astype(np.float64) @ w + b).reshape(2, 10, CLASSES)
    expected = probs.mean(axis=1)

    averaged = evaluation.crop_averaged_logits(model, variables, jnp.asarray(images))
    np.testing.assert_allclose(np.exp(averaged), expected, rtol=1e-5)
    # Averaging logits instead would predict another distribution (and here another class).
    mean_logit_probs = softmax((images.reshape(20, -1) @ w + b).reshape(2, 10, CLASSES).mean(1))
    assert np.abs(mean_logit_probs - expected).max() > 1e-2


def test_default_batch_size_takes_a_workdirs_eval_batch_for_one_crop_only():
    """1 crop: the workdir's eval_batch_size (the trainer's own batches), else 256 images;
    10 and 144 crops: about 256 views per step whatever the workdir says (its batch of 40 images
    would be 5,760 views at 144 crops); always rounded up to a multiple of the devices."""
    assert evaluation.default_batch_size(1, 8, 40) == 40
    assert evaluation.default_batch_size(1, 8, 12) == 16  # 12 rounded up to 2 x 8 devices
    assert evaluation.default_batch_size(1, 8, None) == 256
    assert evaluation.default_batch_size(10, 8, 40) == 32  # 256 // 10 = 25 images, rounded up to 32
    assert evaluation.default_batch_size(144, 8, 40) == 8  # 256 // 144 = 1 image, rounded up to 8
    assert evaluation.default_batch_size(144, 1, 40) == 1
