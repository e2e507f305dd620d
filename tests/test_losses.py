"""Each term of the ss-InfoGAN objective against hand-computed values (logits in, per-example out)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan.model import latents, losses
from tf_ssinfogan.config import CodeSpec

LN2 = math.log(2.0)


def softplus(x):
    return math.log1p(math.exp(x))


def test_discriminator_loss_known_values():
    out = losses.discriminator_loss([0.0, 2.0], [0.0, -1.0]).numpy()
    # -log sigmoid(r) - log(1 - sigmoid(f)) = softplus(-r) + softplus(f)
    np.testing.assert_allclose(out, [2 * LN2, softplus(-2.0) + softplus(-1.0)], rtol=1e-6)
    np.testing.assert_allclose(out, [1.3862944, 0.4401897], rtol=1e-6)
    # weighted real terms (the labelled images of a mixed batch kept out of D's real term)
    out = losses.discriminator_loss([0.0, 2.0], [0.0, -1.0], real_weight=[0.0, 2.0]).numpy()
    np.testing.assert_allclose(out, [LN2, 2 * softplus(-2.0) + softplus(-1.0)], rtol=1e-6)


def test_generator_loss_is_non_saturating():
    out = losses.generator_loss([0.0, 3.0, -20.0]).numpy()
    np.testing.assert_allclose(out, [LN2, 0.0485874, 20.0], rtol=1e-5)
    # gradient stays large when D rejects the fakes (the saturating form's would vanish)
    x = tf.constant([-20.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = losses.generator_loss(x)
    assert abs(float(tape.gradient(y, x)[0])) > 0.99


def test_categorical_code_loss_known_value():
    out = losses.categorical_code_loss([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], [[0, 0, 1], [1, 0, 0]]).numpy()
    expected0 = math.log(math.e + math.e ** 2 + math.e ** 3) - 3.0  # 0.4076060
    np.testing.assert_allclose(out, [expected0, math.log(3.0)], rtol=1e-6)
    np.testing.assert_allclose(out[0], 0.4076060, rtol=1e-6)


def test_binary_code_loss_known_value():
    out = losses.binary_code_loss([[0.0, 2.0]], [[1.0, 0.0]]).numpy()
    np.testing.assert_allclose(out, [(LN2 + softplus(2.0)) / 2], rtol=1e-6)
    np.testing.assert_allclose(out, [1.4100379], rtol=1e-6)


def test_continuous_code_loss_is_reference_mse():
    out = losses.continuous_code_loss([[0.5, -1.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]).numpy()
    np.testing.assert_allclose(out, [2.125, 0.0], rtol=1e-6)


def test_code_loss_dispatches_by_kind():
    cat, cont, binary = CodeSpec("a", "categorical", 3), CodeSpec("b", "continuous", 2), CodeSpec("c", "binary", 2)
    np.testing.assert_allclose(latents.kind_of(cat).loss([[1.0, 2.0, 3.0]], [[0, 0, 1]]), [0.4076060], rtol=1e-6)
    np.testing.assert_allclose(latents.kind_of(cont).loss([[0.5, -1.0]], [[0.0, 1.0]]), [2.125], rtol=1e-6)
    np.testing.assert_allclose(latents.kind_of(binary).loss([[0.0, 2.0]], [[1.0, 0.0]]), [1.4100379], rtol=1e-6)


def test_log_likelihoods_and_mutual_information_bound():
    cont = CodeSpec("b", "continuous", 2)
    ll = latents.code_log_likelihood(cont, [[0.5, -1.0]], [[0.0, 1.0]]).numpy()
    np.testing.assert_allclose(ll, [-0.5 * 4.25 - math.log(2 * math.pi)], rtol=1e-6)  # -3.9628771
    # a perfect categorical Q reaches the bound's maximum H(c) = ln k (InfoGAN: ln 10 = 2.30 on MNIST)
    cat = CodeSpec("d", "categorical", 10)
    perfect = latents.code_log_likelihood(cat, 100.0 * tf.eye(10), tf.eye(10))
    np.testing.assert_allclose(losses.mutual_information_lower_bound(perfect, math.log(10)), 2.3025851, rtol=1e-6)
    # an uninformed Q gives a bound of 0
    uniform = latents.code_log_likelihood(cat, tf.zeros([10, 10]), tf.eye(10))
    np.testing.assert_allclose(losses.mutual_information_lower_bound(uniform, math.log(10)), 0.0, atol=1e-6)


def test_losses_are_stable_for_extreme_logits():
    big = [1000.0, -1000.0]
    for out in (losses.discriminator_loss(big, big), losses.generator_loss(big),
                losses.categorical_code_loss([[1000.0, -1000.0]], [[0.0, 1.0]]),
                losses.binary_code_loss([[1000.0, -1000.0]], [[0.0, 1.0]])):
        assert np.all(np.isfinite(out.numpy()))
    np.testing.assert_allclose(losses.categorical_code_loss([[1000.0, -1000.0]], [[0.0, 1.0]]), [2000.0])


def test_mask_and_global_batch_reduction():
    per = tf.constant([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(losses.masked(per, [1, 0, 1, 0]), [1.0, 0.0, 3.0, 0.0])
    # per-replica sum / global batch: two replicas of 4 examples each average over 8
    assert float(losses.reduce_to_global_batch(per, 8)) == pytest.approx(1.25)
    assert float(losses.reduce_to_global_batch(per, 4)) == pytest.approx(2.5)


def test_categorical_accuracy():
    acc = losses.categorical_accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [[0, 1], [0, 1], [0, 1]])
    np.testing.assert_allclose(acc, [1.0, 0.0, 1.0])
