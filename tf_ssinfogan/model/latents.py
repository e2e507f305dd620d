"""The latent code: noise z plus named codes c = (c_ss, c_us), and the table of code kinds.

Codes travel as a dict `{name: tensor}`:
  * 'noise': float [B, noise_dim] from N(0, 1) (or U(-1, 1)).
  * categorical code: one-hot float [B, k] from `OneHotCategorical` (uniform prior).
  * continuous code: float [B, d] from `Uniform(-1, 1)`.
  * binary code: float {0, 1} [B, d] from `Bernoulli(0.5)`.
The generator input is their concatenation in the order noise, codes (spec order).

Everything that depends on what a code *is* lives in one `CodeKind` per kind (`KINDS`, `kind_of(code)`): its
prior (TFP for training; builtin or stateless uniform draws for SavedModel and TFLite; numpy for parity
inputs), entropy, sweep values, the user-facing value format and its checks (serving specs, in-graph and numpy
checks, text parsing), label-to-target conversion, Q's loss, log-likelihood and prediction, and which label
columns it can be tied to. Other modules ask the kind instead of branching on it; a new kind is one class here.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_ssinfogan.model import losses
from tf_ssinfogan.config import CodeSpec, ConfigError, LatentConfig

tfd = tfp.distributions

NOISE = "noise"


class CodeKind:
    """What one kind of latent code means. Methods take the `CodeSpec` (for its `dim` and `name`).

    Value formats: the *latent* format is what the generator's input holds (one-hot for categorical codes);
    the *user* format is what serving signatures, the sample CLI and `classify` outputs use (a class index
    for categorical codes, the float vector otherwise).
    """

    name = ""
    enumerable = False  # its values can be listed (a class per value): class-conditioned samples and grids
    has_probabilities = False  # Q's prediction comes with probabilities ('<name>_probs' in `classify`)
    widget = "slider"  # the explorer page's control: 'choice' (a class), 'toggle' (a bit per dim), 'slider' (per dim)

    # -- prior
    def prior(self, code: CodeSpec) -> tfd.Distribution:
        """P(c), batch shape [] and event shape [dim] (training)."""
        raise NotImplementedError

    def sample(self, code: CodeSpec, batch, seed) -> tf.Tensor:
        """`batch` draws from the prior in the latent format, from a stateless seed (training)."""
        return self.prior(code).sample(batch, seed=seed)

    def from_uniform(self, code: CodeSpec, uniform, batch) -> tf.Tensor:
        """A draw from the prior in the user format, from `uniform(shape)` -> U[0, 1) (builtin or stateless
        random ops: the SavedModel and TFLite samplers)."""
        raise NotImplementedError

    def numpy_values(self, code: CodeSpec, rng: np.random.RandomState, batch: int) -> np.ndarray:
        """Deterministic user-format values from numpy (parity checks and benchmarks)."""
        raise NotImplementedError

    def entropy(self, code: CodeSpec) -> float:
        """H(c) in nats (differential entropy for continuous codes)."""
        raise NotImplementedError

    # -- values
    def sweep_range(self, code: CodeSpec) -> Tuple[float, float]:
        """(low, high) of a traversal of one dimension."""
        raise NotImplementedError

    def sweep(self, code: CodeSpec, steps) -> tf.Tensor:
        """`steps` float values of one dimension, low to high."""
        lo, hi = self.sweep_range(code)
        return tf.linspace(float(lo), float(hi), steps)

    def traversal_dims(self, code: CodeSpec) -> int:
        """How many separately traversable dimensions the code has (one grid each)."""
        return code.dim

    def to_latent(self, code: CodeSpec, value) -> tf.Tensor:
        """User format [B] or [B, dim] -> latent format [B, dim] float32."""
        return tf.reshape(tf.cast(value, tf.float32), [-1, code.dim])

    def replace_dim(self, code: CodeSpec, value, dim: int, sweep) -> tf.Tensor:
        """User-format values [N, ...] with dimension `dim` set to `sweep` [N] (a traversal)."""
        onehot = tf.one_hot(dim, code.dim)[None, :]
        return value * (1.0 - onehot) + tf.cast(sweep, tf.float32)[:, None] * onehot

    def numpy_value(self, code: CodeSpec, value=None) -> np.ndarray:
        """One user-format value in numpy (a `sample` request), default zero; a single number fills every dim."""
        v = np.asarray(np.zeros(code.dim) if value is None else value, np.float32).reshape(-1)
        return np.full(code.dim, v[0], np.float32) if v.size == 1 and code.dim > 1 else v

    def fill(self, code: CodeSpec, value, batch) -> tf.Tensor:
        """One user-format value (a `sample` input) repeated for `batch` examples."""
        return tf.reshape(value, [1, code.dim]) + tf.zeros(tf.stack([batch, code.dim]), tf.float32)

    def serving_spec(self, code: CodeSpec, batched: bool = True) -> tf.TensorSpec:
        """The user-format input of a signature: a batch of values, or one value (`batched=False`)."""
        return tf.TensorSpec([None, code.dim] if batched else [code.dim], tf.float32, name=code.name)

    def graph_checks(self, code: CodeSpec, value) -> List[tf.Operation]:
        """In-graph checks of a user-format value (messages start with "input '<name>':")."""
        return [tf.debugging.assert_equal(tf.shape(value)[-1], code.dim,
                                          message=f"input '{code.name}': expected width {code.dim} (last dimension)"),
                tf.debugging.assert_all_finite(value, message=f"input '{code.name}': values must be finite")]

    def check_numpy(self, code: CodeSpec, value) -> None:
        """The same checks in numpy (TFLite models have no Assert op). Raises ValueError."""
        v = np.asarray(value)
        if v.shape[-1:] != (code.dim,):
            raise ValueError(f"input '{code.name}': expected width {code.dim}, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"input '{code.name}': values must be finite")

    def parse(self, code: CodeSpec, text: str):
        """A user-format value from text ('3' or '0.5,-1'). Raises ValueError."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"{text!r} is not a valid value for a {self.name} code") from None
        if len(values) not in (1, code.dim):
            raise ValueError(f"expected 1 or {code.dim} values")
        return values

    # -- labels and Q
    def stored_label(self, y: np.ndarray) -> np.ndarray:
        """A label column's values as the training stream keeps them."""
        y = np.asarray(y, np.float32)
        return y.reshape(len(y), int(np.prod(y.shape[1:])))  # [N, d] (N may be 0: no labelled example)

    def label_to_target(self, code: CodeSpec, y) -> tf.Tensor:
        """Stored labels -> targets in the latent format."""
        return tf.reshape(tf.cast(y, tf.float32), [-1, code.dim])

    def loss(self, q_output, target) -> tf.Tensor:
        """-log Q(c|x) up to constants, per example [B] (see losses.py)."""
        raise NotImplementedError

    def log_likelihood(self, code: CodeSpec, q_output, target) -> tf.Tensor:
        """log Q(c|x) in nats, per example [B]: the term inside the expectation of Eqs. (2)-(4)."""
        raise NotImplementedError

    def probabilities(self, q_output) -> tf.Tensor:
        """Q's output as probabilities (categorical, binary) or the estimate itself (continuous)."""
        return q_output

    def prediction(self, probabilities) -> tf.Tensor:
        """The user-format value Q predicts, from `probabilities`."""
        return probabilities

    def pseudo_label(self, q_output, threshold: float):
        """(target in the latent format, confident [B] float) from Q's own output for pseudo-labelling
        unlabelled images (no gradient through either), or None where the kind has no discrete prediction."""
        return None

    def label_hits(self, code: CodeSpec, probabilities, y) -> Tuple[tf.Tensor, tf.Tensor]:
        """(correct, counted) per example for Q's prediction against stored labels (unknown labels: not
        counted), or None where accuracy does not apply."""
        return None

    def meaning(self, code: CodeSpec, names: Optional[dict], mapping, labelled: bool) -> str:
        """What the code's values mean, for a model card (`names`: the class names of its label column,
        `mapping`: the evaluation's best code-value-to-class match, `labelled`: the run had labels)."""
        if code.label is not None and labelled:
            return f"continuous in [-1, 1], tied to label {code.label!r}"
        return f"unsupervised: {code.dim} value(s) in [-1, 1] from U(-1, 1), meaning learnt (see the traversal grids)"

    def check_label_column(self, code: CodeSpec, column, y: np.ndarray, side: str) -> None:
        """Raises ConfigError when the label column (a `sources.LabelColumn` and its values) cannot back the
        code; `side` names the column in the message."""
        raise NotImplementedError


def _this(code: CodeSpec) -> str:
    return f"code {code.name!r} ({code.kind}, dim {code.dim})"


def _width(y: np.ndarray) -> int:
    return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1


class Categorical(CodeKind):
    """k values, one-hot in the latent, a class index for users; Q: softmax cross-entropy."""

    name = "categorical"
    enumerable = True
    has_probabilities = True
    widget = "choice"

    def prior(self, code):
        return tfd.OneHotCategorical(logits=tf.zeros([code.dim]), dtype=tf.float32)

    def sample(self, code, batch, seed):
        # The prior's own draw (the same stateless op, seed and values), with int32 indices: TFP transposes int64
        # ones, and an int64 Transpose makes oneDNN's graph pass log an error-level line on every CPU
        # ("oneDNN supports DT_INT64 only on platforms with AVX-512").
        index = tf.random.stateless_categorical(tf.zeros([1, code.dim]), batch, seed=tfp.random.sanitize_seed(seed),
                                                dtype=tf.int32)
        return tf.one_hot(tf.reshape(index, [-1]), code.dim, dtype=tf.float32)

    def from_uniform(self, code, uniform, batch):
        u = uniform(tf.reshape(batch, [1]))  # uniform prior: floor(U * k)
        return tf.minimum(tf.cast(tf.floor(u * code.dim), tf.int32), code.dim - 1)

    def numpy_values(self, code, rng, batch):
        return (np.arange(batch) % code.dim).astype(np.int32)

    def entropy(self, code):
        return math.log(code.dim)

    def sweep_range(self, code):
        return 0.0, float(code.dim - 1)

    def sweep(self, code, steps):
        return tf.round(super().sweep(code, steps))

    def traversal_dims(self, code):
        return 1

    def to_latent(self, code, value):
        if value.shape.rank == 1:
            return tf.one_hot(tf.cast(value, tf.int32), code.dim)
        return super().to_latent(code, value)

    def replace_dim(self, code, value, dim, sweep):
        return tf.cast(sweep, tf.int32)

    def numpy_value(self, code, value=None):
        return np.array(0 if value is None else value, np.int32)

    def fill(self, code, value, batch):
        return tf.fill(tf.reshape(batch, [1]), value)

    def serving_spec(self, code, batched=True):
        return tf.TensorSpec([None] if batched else [], tf.int32, name=code.name)

    def graph_checks(self, code, value):
        return [tf.debugging.assert_non_negative(value, message=f"input '{code.name}': class index must be >= 0"),
                tf.debugging.assert_less(value, tf.constant(code.dim, value.dtype),
                                         message=f"input '{code.name}': class index must be < {code.dim}")]

    def check_numpy(self, code, value):
        v = np.asarray(value)
        if not np.issubdtype(v.dtype, np.integer) or np.any(v < 0) or np.any(v >= code.dim):
            raise ValueError(f"input '{code.name}': class index must be an integer in [0, {code.dim}), got {v}")

    def parse(self, code, text):
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid value for a {self.name} code") from None
        if not 0 <= value < code.dim:
            raise ValueError(f"class index must be in [0, {code.dim})")
        return value

    def stored_label(self, y):
        return np.asarray(y).astype(np.int64)

    def label_to_target(self, code, y):
        return tf.one_hot(tf.cast(y, tf.int32), code.dim)

    def loss(self, q_output, target):
        return losses.categorical_code_loss(q_output, target)

    def log_likelihood(self, code, q_output, target):
        return -losses.categorical_code_loss(q_output, target)

    def probabilities(self, q_output):
        return tf.nn.softmax(q_output)

    def prediction(self, probabilities):
        return tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)

    def pseudo_label(self, q_output, threshold):
        p = tf.stop_gradient(self.probabilities(tf.cast(q_output, tf.float32)))
        target = tf.one_hot(tf.argmax(p, -1), tf.shape(p)[-1])
        return target, tf.cast(tf.reduce_max(p, -1) >= threshold, tf.float32)

    def label_hits(self, code, probabilities, y):
        valid = tf.cast(y >= 0, tf.float32)
        hit = tf.cast(tf.equal(tf.argmax(probabilities, -1), tf.cast(y, tf.int64)), tf.float32)
        return hit * valid, valid

    def meaning(self, code, names, mapping, labelled):
        if code.label is not None and labelled:
            values = ", ".join(f"{i} = {n!r}" for i, n in enumerate(names["names"])) if names else ""
            return f"value i asks for class i of label {code.label!r}: {values}"
        text = f"unsupervised: {code.dim} values with no fixed meaning"
        if mapping and names:
            text += "; the evaluation's best match to classes: " + ", ".join(
                f"{i} ~ {names['names'][m]!r}" for i, m in enumerate(mapping) if 0 <= m < len(names["names"]))
        return text

    def check_label_column(self, code, column, y, side):
        this = _this(code)
        if column.kind == "binary" and code.dim != 2:
            raise ConfigError(f"{this} cannot be tied to {side}: it is a binary (0/1) attribute; use "
                              f"'{code.name}:bin:1:{code.label}' or a 2-way categorical code")
        if column.kind == "continuous":
            raise ConfigError(f"{this} cannot be tied to {side}: it holds continuous values; use a continuous code")
        if y.ndim != 1:
            raise ConfigError(f"{this} needs one class index per image but {side} has shape {y.shape}")
        if column.num_classes is not None and column.num_classes != code.dim:
            raise ConfigError(f"{this} has {code.dim} categories but {side} has {column.num_classes} classes")
        known = y[y >= 0]
        if known.size and known.max() >= code.dim:
            raise ConfigError(f"code {code.name!r} has {code.dim} categories, but {side} has values up to "
                              f"{int(known.max())}")


class Continuous(CodeKind):
    """Uniform(-1, 1) per dimension; Q: squared error (the reference's MSE, a unit-variance Gaussian)."""

    name = "continuous"

    def prior(self, code):
        return tfd.Independent(tfd.Uniform(low=-tf.ones([code.dim]), high=tf.ones([code.dim])), 1)

    def from_uniform(self, code, uniform, batch):
        return uniform(tf.stack([batch, code.dim])) * 2.0 - 1.0

    def numpy_values(self, code, rng, batch):
        return rng.uniform(-1, 1, (batch, code.dim)).astype(np.float32)

    def entropy(self, code):
        return code.dim * math.log(2.0)

    def sweep_range(self, code):
        return -1.0, 1.0

    def loss(self, q_output, target):
        return losses.continuous_code_loss(q_output, target)

    def log_likelihood(self, code, q_output, target):
        return losses.continuous_log_likelihood(q_output, target)

    def check_label_column(self, code, column, y, side):
        if column.kind != "continuous":
            raise ConfigError(f"{_this(code)} cannot be tied to {side}: it is a {column.kind} label (integers); a "
                              "continuous code needs a float column (NaN = unlabelled)")
        if _width(y) != code.dim:
            raise ConfigError(f"{_this(code)} needs {code.dim} value(s) per image but {side} has {_width(y)} "
                              f"(shape {y.shape})")


class Binary(CodeKind):
    """Bernoulli(0.5) per dimension, values 0/1; Q: sigmoid cross-entropy."""

    name = "binary"
    has_probabilities = True
    widget = "toggle"

    def prior(self, code):
        return tfd.Independent(tfd.Bernoulli(logits=tf.zeros([code.dim]), dtype=tf.float32), 1)

    def from_uniform(self, code, uniform, batch):
        return tf.cast(uniform(tf.stack([batch, code.dim])) < 0.5, tf.float32)

    def numpy_values(self, code, rng, batch):
        return (rng.uniform(size=(batch, code.dim)) < 0.5).astype(np.float32)

    def entropy(self, code):
        return code.dim * math.log(2.0)

    def sweep_range(self, code):
        return 0.0, 1.0

    def loss(self, q_output, target):
        return losses.binary_code_loss(q_output, target)

    def log_likelihood(self, code, q_output, target):
        return losses.binary_log_likelihood(q_output, target)

    def probabilities(self, q_output):
        return tf.sigmoid(q_output)

    def prediction(self, probabilities):
        return tf.cast(probabilities > 0.5, tf.float32)

    def pseudo_label(self, q_output, threshold):
        p = tf.stop_gradient(self.probabilities(tf.cast(q_output, tf.float32)))
        confident = tf.reduce_min(tf.maximum(p, 1.0 - p), -1) >= threshold  # every attribute confident
        return tf.cast(p > 0.5, tf.float32), tf.cast(confident, tf.float32)

    def label_hits(self, code, probabilities, y):
        y = tf.reshape(tf.cast(y, tf.float32), [-1, code.dim])
        valid = tf.cast(y >= 0, tf.float32)  # negative = unknown attribute: not counted
        hit = tf.cast(tf.equal(probabilities > 0.5, y > 0.5), tf.float32)
        return tf.reduce_sum(hit * valid, -1) / code.dim, tf.reduce_sum(valid, -1) / code.dim

    def meaning(self, code, names, mapping, labelled):
        if code.label is not None and labelled:
            return f"{code.dim} bit(s) tied to label {code.label!r}: 1 = present, 0 = absent"
        return f"unsupervised: {code.dim} bit(s), Bernoulli(0.5), meaning learnt (see the traversal grids)"

    def check_label_column(self, code, column, y, side):
        zero_one = column.kind == "categorical" and column.num_classes in (None, 2) and np.isin(y, (-1, 0, 1)).all()
        if column.kind != "binary" and not zero_one:
            what = (f"a categorical label with {column.num_classes} classes" if column.num_classes
                    else f"a {column.kind} label")
            raise ConfigError(f"{_this(code)} cannot be tied to {side}: it is {what}, not a 0/1 attribute; use a "
                              f"categorical code ('{code.name}:cat:{column.num_classes or 'K'}:{code.label}')")
        if _width(y) != code.dim:
            raise ConfigError(f"{_this(code)} needs {code.dim} value(s) per image but {side} has {_width(y)} "
                              f"(shape {y.shape})")


KINDS: Dict[str, CodeKind] = {k.name: k for k in (Categorical(), Continuous(), Binary())}


def kind_of(code: CodeSpec) -> CodeKind:
    """The `CodeKind` of a code."""
    return KINDS[code.kind]


def code_distribution(code: CodeSpec) -> tfd.Distribution:
    """The prior P(c) of one code, batch shape [] and event shape [dim]."""
    return kind_of(code).prior(code)


def code_log_likelihood(code: CodeSpec, q_output, target) -> tf.Tensor:
    """log Q(c|x) in nats per example for `code`'s kind (Eqs. 2-4). Returns [B]."""
    return kind_of(code).log_likelihood(code, q_output, target)


def first_enumerable(codes, exclude: str = "") -> Optional[CodeSpec]:
    """The first code whose values can be listed (a categorical code), other than `exclude`."""
    return next((c for c in codes if kind_of(c).enumerable and c.name != exclude), None)


class LatentSpace:
    """Samples, splits and encodes latents for a `LatentConfig`."""

    def __init__(self, config: LatentConfig):
        config.validate()
        self.config = config
        self.codes = config.codes
        self.noise_dim = config.noise_dim
        self.input_dim = config.input_dim

    def code(self, name: str) -> CodeSpec:
        return next(c for c in self.codes if c.name == name)

    def noise_distribution(self) -> tfd.Distribution:
        if self.config.noise_distribution == "normal":
            return tfd.Independent(tfd.Normal(tf.zeros([self.noise_dim]), tf.ones([self.noise_dim])), 1)
        return tfd.Independent(tfd.Uniform(-tf.ones([self.noise_dim]), tf.ones([self.noise_dim])), 1)

    def sample(self, batch_size, seed) -> Dict[str, tf.Tensor]:
        """Draws a batch of latents with a stateless seed (int tensor of shape [2])."""
        seeds = tfp.random.split_seed(tf.cast(seed, tf.int32), n=len(self.codes) + 1)
        out = {NOISE: self.noise_distribution().sample(batch_size, seed=seeds[0])}
        for code, s in zip(self.codes, seeds[1:]):
            out[code.name] = kind_of(code).sample(code, batch_size, s)
        return out

    def entropy(self, code: CodeSpec) -> float:
        """H(c) in nats for the prior of `code` (differential entropy for continuous codes)."""
        return kind_of(code).entropy(code)

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
        """Latents from user-format values (categorical codes as int indices [B] become one-hot)."""
        out = {NOISE: tf.cast(values[NOISE], tf.float32)} if self.noise_dim else {}
        for code in self.codes:
            out[code.name] = kind_of(code).to_latent(code, tf.convert_to_tensor(values[code.name]))
        return out

    def split(self, vector: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Inverse of `to_generator_input`."""
        sizes = ([self.noise_dim] if self.noise_dim else []) + [c.dim for c in self.codes]
        names = ([NOISE] if self.noise_dim else []) + [c.name for c in self.codes]
        return dict(zip(names, tf.split(vector, sizes, axis=-1)))
