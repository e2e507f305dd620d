"""The fused training-mode BatchNorm (networks.FUSED_BATCH_NORM) computes what Keras's own BatchNormalization
computes: outputs, gradients and moving statistics, in float32 and in mixed_bfloat16, on 4-d and 2-d inputs."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan.model import networks
from tf_ssinfogan.model.ssinfogan import precision_policy


def _pair(precision, shape):
    layers = []
    for fused in (True, False):
        networks.FUSED_BATCH_NORM, before = fused, networks.FUSED_BATCH_NORM
        try:
            with precision_policy(precision):
                bn = networks.BatchNorm(momentum=0.9, epsilon=1e-3,
                                        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.2, seed=3),
                                        beta_initializer=keras.initializers.RandomNormal(0.0, 0.2, seed=4))
                bn.build(shape)
        finally:
            networks.FUSED_BATCH_NORM = before
        layers.append(bn)
    layers[1].set_weights(layers[0].get_weights())
    return layers


def _run(bn, x, update):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bn(x, training=True, update_statistics=update)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(y.shape, [1, 2]))
    grads = tape.gradient(loss, [x, bn.gamma, bn.beta])
    return y, grads


@pytest.mark.parametrize("precision,shape,tol", [("float32", (16, 5, 5, 6), 1e-5), ("float32", (32, 7), 1e-5),
                                                 ("mixed_bfloat16", (16, 5, 5, 6), 3e-2)])
def test_fused_training_call_matches_keras_batch_norm(precision, shape, tol):
    fused, plain = _pair(precision, shape)
    assert fused.fused and not plain.fused
    x = tf.constant(np.random.RandomState(0).normal(2.0, 3.0, shape).astype(np.float32))
    if precision != "float32":
        x = tf.cast(x, tf.bfloat16)
    for update in (True, False):
        y_f, g_f = _run(fused, x, update)
        y_p, g_p = _run(plain, x, update)
        assert y_f.dtype == y_p.dtype == fused.compute_dtype
        # the output is normalised: per-channel mean 0 and std |gamma| before beta
        y32 = tf.cast(y_f, tf.float32).numpy().reshape(-1, shape[-1])
        np.testing.assert_allclose(y32.mean(0), fused.beta.numpy(), atol=5 * tol + 1e-5)
        np.testing.assert_allclose(y32, tf.cast(y_p, tf.float32).numpy().reshape(-1, shape[-1]), atol=tol * 4)
        for a, b in zip(g_f, g_p):
            a, b = tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy()
            np.testing.assert_allclose(a, b, atol=tol * 4 * max(1.0, np.abs(b).max()))
        np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-4)
    # one update moved the statistics by a tenth of the way (momentum 0.9) towards the batch's biased moments
    x32 = tf.cast(x, tf.float32).numpy().reshape(-1, shape[-1])
    np.testing.assert_allclose(fused.moving_mean.numpy(), 0.1 * x32.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.9 + 0.1 * x32.var(0), rtol=1e-3)


def test_synchronised_batch_norm_keeps_the_unfused_path():
    networks.FUSED_BATCH_NORM, before = True, networks.FUSED_BATCH_NORM
    try:
        bn = networks.BatchNorm(synchronized=True)
    finally:
        networks.FUSED_BATCH_NORM = before
    assert not bn._fused_applies(tf.zeros([4, 3, 3, 2]), None)
    bn.synchronized = False
    assert bn._fused_applies(tf.zeros([4, 3, 3, 2]), None) and not bn._fused_applies(tf.zeros([4, 3, 2]), None)
