"""Adam with TensorFlow's fused kernel: the same update as `keras.optimizers.Adam`, several times faster.

Keras 3's Adam updates each variable with about ten elementwise ops, each a pass over the variable, its
moments and the gradient; on a CPU that is memory-bound work: for the MNIST networks' 13.4M parameters it
was about a fifth of a training step. `FusedAdam` runs TF's `ResourceApplyAdam` kernel instead, one pass
per variable, with the same formula (Kingma & Ba 2015, Algorithm 1, with epsilon added to sqrt(v_t)):

    alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m_t = beta_1 m + (1 - beta_1) g;  v_t = beta_2 v + (1 - beta_2) g^2;  var -= alpha_t m_t / (sqrt(v_t) + eps)

It keeps Keras's slot variables (so checkpoints are interchangeable with `keras.optimizers.Adam`) and runs
under every tf.distribute strategy (Keras calls `update_step` per device inside `extended.update`, where a
mirrored slot's `handle` is that device's copy). AMSGrad and sparse gradients use Keras's own update.

It reads Keras internals (`Adam._momentums`, `_velocities`, `_get_variable_index`; Keras 3.10-3.15 have
them), so it is off by default (`--fused_adam` turns it on). Where a Keras release lacks them, it warns once
and runs `keras.optimizers.Adam`'s own update: the same result, only slower.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

# The Keras internals the fused update reads (present in Keras 3.10-3.15).
KERAS_INTERNALS = ("_momentums", "_velocities", "_get_variable_index")


def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


@keras.saving.register_keras_serializable(package="tf_ssinfogan")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` (same arguments) whose dense update is one fused kernel per variable."""

    def missing_internals(self):
        """The Keras internals this optimiser needs that are missing (empty: the fused kernel runs)."""
        return [name for name in KERAS_INTERNALS if not hasattr(self, name)]

    def _fused(self):
        if not hasattr(self, "_fused_ok"):  # decided once, after build
            missing = self.missing_internals()
            self._fused_ok = not missing
            if missing:
                warnings.warn(f"FusedAdam: Keras {keras.__version__} has no Adam.{', Adam.'.join(missing)}; using "
                              "keras.optimizers.Adam's update instead (same result, slower; --nofused_adam "
                              "silences this)", RuntimeWarning, stacklevel=3)
        return self._fused_ok

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or keras.backend.backend() != "tensorflow" \
                or not self._fused():
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype), use_locking=False)


@keras.saving.register_keras_serializable(package="tf_ssinfogan")
class StepCountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's dynamic loss scaling (float16 training) where a step skipped for overflowing gradients still
    advances `iterations`. The model's step counter is the G optimiser's iterations: it must count every
    batch, or the labelled-batch schedule, instance noise and epoch-boundary checkpoints drift from the data.
    (The skipped step is not applied; Adam's bias correction then sees one more step, as with nan_policy=skip.)
    """

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        self.inner_optimizer.iterations.assign_add(1)


def make_adam(learning_rate: float, beta_1: float, beta_2: float, name: str, fused: bool = False,
              precision: str = "float32", ema_momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """The training optimiser: FusedAdam (or keras Adam), wrapped in dynamic loss scaling for mixed_float16.
    `ema_momentum` > 0 makes it keep an exponential moving average of the weights it updates (Keras's
    `use_ema`; `finalize_variable_values` copies the averages into the weights)."""
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum > 0 else {}
    adam = (FusedAdam if fused else keras.optimizers.Adam)(learning_rate, beta_1=beta_1, beta_2=beta_2, name=name,
                                                            **ema)
    return StepCountingLossScaleOptimizer(adam, name=f"{name}_scaled") if precision == "mixed_float16" else adam
