"""The ss-InfoGAN objective, one pure function per term (logits in, per-example losses out).

Every function returns a float32 vector of shape [B] (one value per example) so that the caller can reduce
it to the global batch (`reduce_to_global_batch`) under a `tf.distribute` strategy. Equation numbers refer to
Spurr et al., "Guiding InfoGAN with Semi-Supervision" (ECML 2017):

  (1)  V(D, G): the GAN value function -> `discriminator_loss`, `generator_loss` (non-saturating G).
  (2)  L_I(G, Q) = E[log Q(c|G(z,c))] + H(c): InfoGAN's bound for c_us -> `code_nll` on fakes.
  (3)  L_IS(Q_ss) = E_{(x,y)}[log Q_ss(y|x)] + H(y): the bound on labelled real data -> `code_nll` on reals.
  (4)  L_IS(G, Q_ss) on fakes with c_ss as targets -> `code_nll` on fakes.
  (6, 7) min_{G,Q} max_D V - lambda_us L_I - lambda_ss L_IS, with lambda_ss = 2.0 and lambda_us = 0.8 in the
  reference code.
For a code c, -log Q(c|x) up to constants is the softmax cross-entropy (categorical), the sigmoid
cross-entropy (binary) or the squared error (continuous, the reference's MSE instead of a Gaussian); which
applies to a code is its kind's choice (`latents.kind_of(code).loss`, `.log_likelihood`).
"""

from __future__ import annotations

import math

import tensorflow as tf



def discriminator_loss(real_logits, fake_logits, real_weight=None):
    """Eq. (1) for D: -log D(x) - log(1 - D(G(z))), stable in the logits. Returns [B].

    `real_weight` ([B], optional) weights each real image's term (e.g. 0 for images D must not learn from)."""
    real_logits = tf.convert_to_tensor(real_logits, tf.float32)
    fake_logits = tf.convert_to_tensor(fake_logits, tf.float32)
    real = tf.nn.softplus(-real_logits)
    if real_weight is not None:
        real = real * tf.cast(real_weight, tf.float32)
    return real + tf.nn.softplus(fake_logits)


def generator_loss(fake_logits):
    """Eq. (1) for G, non-saturating form: -log D(G(z)). Returns [B]."""
    return tf.nn.softplus(-tf.convert_to_tensor(fake_logits, tf.float32))


def categorical_code_loss(logits, target_one_hot):
    """-log Q(c|x) for a categorical code: softmax cross-entropy on logits. Returns [B]."""
    return tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.cast(target_one_hot, tf.float32), logits=tf.cast(logits, tf.float32)
    )


def binary_code_loss(logits, target):
    """Sigmoid cross-entropy of binary codes, averaged over the code's dims. Returns [B]."""
    return tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(target, tf.float32), logits=tf.cast(logits, tf.float32)),
        axis=-1,
    )


def continuous_code_loss(estimate, target):
    """Mean squared error of continuous codes over the code's dims (reference, = Torch MSECriterion). [B]."""
    diff = tf.cast(estimate, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.square(diff), axis=-1)


def binary_log_likelihood(logits, target):
    """log Q(c|x) of binary codes: the Bernoulli log-likelihood summed over the code's dims. Returns [B]."""
    return -tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(target, tf.float32), logits=tf.cast(logits, tf.float32)),
        axis=-1,
    )


def continuous_log_likelihood(estimate, target):
    """log Q(c|x) of continuous codes under the unit-variance Gaussian that the MSE corresponds to (InfoGAN's
    fixed-std posterior), summed over the code's dims. Returns [B]."""
    diff = tf.cast(estimate, tf.float32) - tf.cast(target, tf.float32)
    dim = tf.cast(tf.shape(diff)[-1], tf.float32)
    return -0.5 * tf.reduce_sum(tf.square(diff), axis=-1) - 0.5 * dim * math.log(2.0 * math.pi)


def mutual_information_lower_bound(log_likelihood, entropy):
    """L_I = E[log Q(c|x)] + H(c) <= I(c; x), Eq. (2)/(3). `log_likelihood` is [B]; returns a scalar."""
    return tf.reduce_mean(log_likelihood) + entropy


def masked(per_example, mask):
    """Zeroes the losses of examples whose mask is 0 (e.g. unlabelled real images). Returns [B]."""
    return per_example * tf.cast(mask, per_example.dtype)


def reduce_to_global_batch(per_example, global_batch_size):
    """Sum over this replica's examples / global batch size: correct under any number of replicas."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def categorical_accuracy(logits, target_one_hot):
    """1.0 where argmax(logits) == argmax(target), per example. Returns [B]."""
    return tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(target_one_hot, -1)), tf.float32)
