"""The latent code: noise z plus named codes c = (c_ss, c_us), backed by TFP distributions.

Codes travel as a dict `{name: tensor}`:
  * 'noise': float [B, noise_dim] from N(0, 1) (or U(-1, 1)).
  * categorical code: one-hot float [B, k] from `OneHotCategorical` (uniform prior).
  * continuous code: float [B, d] from `Uniform(-1, 1)`.
  * binary code: float {0, 1} [B, d] from `Bernoulli(0.5)`.
The generator input is their concatenation in the order noise, codes (spec order).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping

import tensorflow as tf
import tensorflow_probability as tfp

from tf_ssinfogan.config import CodeSpec, LatentConfig

tfd = tfp.distributions

NOISE = "noise"


def code_distribution(code: CodeSpec) -> tfd.Distribution:
    """The prior P(c) of one code, batch shape [] and event shape [dim]."""
    if code.kind == "categorical":
        return tfd.OneHotCategorical(logits=tf.zeros([code.dim]), dtype=tf.float32)
    if code.kind == "continuous":
        return tfd.Independent(tfd.Uniform(low=-tf.ones([code.dim]), high=tf.ones([code.dim])), 1)
    return tfd.Independent(tfd.Bernoulli(logits=tf.zeros([code.dim]), dtype=tf.float32), 1)


class LatentSpace:
    """Samples, splits and encodes latents for a `LatentConfig`."""

    def __init__(self, config: LatentConfig):
        config.validate()
        self.config = config
        self.codes = config.codes
        self.noise_dim = config.noise_dim
        self.input_dim = config.input_dim

    def noise_distribution(self) -> tfd.Distribution:
        if self.config.noise_distribution == "normal":
            return tfd.Independent(tfd.Normal(tf.zeros([self.noise_dim]), tf.ones([self.noise_dim])), 1)
        return tfd.Independent(tfd.Uniform(-tf.ones([self.noise_dim]), tf.ones([self.noise_dim])), 1)

    def sample(self, batch_size, seed) -> Dict[str, tf.Tensor]:
        """Draws a batch of latents with a stateless seed (int tensor of shape [2])."""
        seeds = tfp.random.split_seed(tf.cast(seed, tf.int32), n=len(self.codes) + 1)
        out = {NOISE: self.noise_distribution().sample(batch_size, seed=seeds[0])}
        for code, s in zip(self.codes, seeds[1:]):
            out[code.name] = code_distribution(code).sample(batch_size, seed=s)
        return out

    def entropy(self, code: CodeSpec) -> float:
        """H(c) in nats for the prior of `code` (differential entropy for continuous codes)."""
        if code.kind == "categorical":
            return math.log(code.dim)
        if code.kind == "continuous":
            return code.dim * math.log(2.0)
        return code.dim * math.log(2.0)

    def log_prob(self, code: CodeSpec, values) -> tf.Tensor:
        return code_distribution(code).log_prob(values)

    def to_generator_input(self, latents: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Concatenates noise and codes (in spec order) into the generator's input vector."""
        parts = []
        if self.noise_dim:
            parts.append(tf.cast(latents[NOISE], tf.float32))
        for code in self.codes:
            parts.append(tf.cast(latents[code.name], tf.float32))
        return tf.concat(parts, axis=-1)

    def from_values(self, values: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Latents from user-facing values: categorical codes given as int indices [B] become one-hot."""
        out = {NOISE: tf.cast(values[NOISE], tf.float32)} if self.noise_dim else {}
        for code in self.codes:
            v = values[code.name]
            if code.kind == "categorical" and v.shape.rank == 1:
                v = tf.one_hot(tf.cast(v, tf.int32), code.dim)
            else:
                v = tf.reshape(tf.cast(v, tf.float32), [-1, code.dim])
            out[code.name] = v
        return out

    def split(self, vector: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Inverse of `to_generator_input`."""
        sizes = ([self.noise_dim] if self.noise_dim else []) + [c.dim for c in self.codes]
        names = ([NOISE] if self.noise_dim else []) + [c.name for c in self.codes]
        return dict(zip(names, tf.split(vector, sizes, axis=-1)))
