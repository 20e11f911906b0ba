"""The weighted training loss and the evaluation sums, against hand computations."""
import jax.numpy as jnp
import numpy as np

from googlenet_jax.model import losses


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_is_main_plus_weighted_aux_cross_entropies():
    rng = np.random.RandomState(0)
    main, aux1, aux2 = (rng.randn(4, 5).astype(np.float32) for _ in range(3))
    labels = np.array([0, 3, 4, 1], np.int32)
    total, parts = losses.googlenet_loss(main, (aux1, aux2), labels, aux_weight=0.3)
    ce = lambda z: -_log_softmax(z)[np.arange(4), labels].mean()  # noqa: E731
    np.testing.assert_allclose(total, ce(main) + 0.3 * (ce(aux1) + ce(aux2)), rtol=1e-6)
    np.testing.assert_allclose(parts["loss_aux2"], ce(aux2), rtol=1e-6)
    assert total.dtype == jnp.float32


def test_label_smoothing_spreads_target_mass_over_all_classes():
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    got = losses.cross_entropy(logits, np.array([0]), label_smoothing=0.3)
    target = np.array([0.7 + 0.1, 0.1, 0.1])
    np.testing.assert_allclose(got, [-(target * _log_softmax(logits)[0]).sum()], rtol=1e-6)


def test_bfloat16_logits_are_cast_to_float32_before_the_loss():
    logits = jnp.asarray([[3.0, 1.0, 0.5]], jnp.bfloat16)
    assert losses.cross_entropy(logits, jnp.array([1])).dtype == jnp.float32


def test_eval_sums_ignore_padded_examples_and_count_top5():
    # Labels' ranks: 0 (top-1), 4 (top-5 only), 6 (neither), and a padded row.
    logits = np.tile(np.arange(10, 0, -1, dtype=np.float32), (4, 1))  # class k has rank k
    labels = np.array([0, 4, 6, 0], np.int32)
    mask = np.array([True, True, True, False])
    sums = losses.eval_sums(logits, labels, mask)
    assert float(sums["count"]) == 3
    assert float(sums["top1"]) == 1
    assert float(sums["top5"]) == 2
    expected_loss = -_log_softmax(logits)[np.arange(3), labels[:3]].sum()
    np.testing.assert_allclose(sums["loss"], expected_loss, rtol=1e-6)
