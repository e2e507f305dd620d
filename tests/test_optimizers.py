"""FusedAdam: the update of keras.optimizers.Adam (Kingma & Ba 2015), through TF's fused kernel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan.model.optimizers import FusedAdam, StepCountingLossScaleOptimizer
from conftest import mirrored_strategy

SHAPES = [(3, 4), (5,), (2, 2, 3, 4)]


def _grads(step):
    rng = np.random.RandomState(step)
    return [rng.randn(*s).astype(np.float32) for s in SHAPES]


def _run(optimizer, steps=5, strategy=None):
    """Variables after `steps` updates by `optimizer` (an instance, or a factory called in the strategy scope)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        optimizer = optimizer() if callable(optimizer) and not isinstance(optimizer, keras.Optimizer) else optimizer
        variables = [keras.Variable(np.full(s, 0.5, np.float32), name=f"w{i}") for i, s in enumerate(SHAPES)]
        optimizer.build(variables)

    for t in range(steps):
        grads = _grads(t)

        @tf.function
        def apply():
            def replica():  # each replica passes the same gradients (made inside: a non-distributed tensor
                # argument to strategy.run cannot be all-reduced)
                optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))
            strategy.run(replica)

        apply()
    return variables


def test_matches_the_adam_formula_by_hand():
    lr, b1, b2, eps = 0.01, 0.5, 0.999, 1e-7
    got = _run(FusedAdam(lr, beta_1=b1, beta_2=b2, epsilon=eps))
    for i, s in enumerate(SHAPES):
        w, m, v = np.full(s, 0.5), np.zeros(s), np.zeros(s)
        for t in range(1, 6):
            g = _grads(t - 1)[i]
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(got[i].numpy(), w, atol=2e-6)


def test_first_step_moves_each_weight_by_lr_times_the_sign_of_its_gradient():
    got = _run(FusedAdam(0.1, beta_1=0.5), steps=1)
    for var, g in zip(got, _grads(0)):
        # lr * g / (|g| + eps): within 1e-4 of lr * sign(g) for these gradients (smallest |g| is about 1e-3)
        np.testing.assert_allclose(var.numpy(), 0.5 - 0.1 * np.sign(g), atol=1e-4)


def test_equals_keras_adam_with_the_same_slots():
    fused, plain = FusedAdam(1e-3, beta_1=0.5, name="adam"), keras.optimizers.Adam(1e-3, beta_1=0.5, name="adam")
    a, b = _run(fused, steps=7), _run(plain, steps=7)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-7)
    assert [v.path for v in fused.variables] == [v.path for v in plain.variables]  # checkpoints interchange
    for x, y in zip(fused.variables, plain.variables):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-9)


def test_amsgrad_falls_back_to_the_keras_update():
    a = _run(FusedAdam(1e-2, amsgrad=True))
    b = _run(keras.optimizers.Adam(1e-2, amsgrad=True))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-7)


def test_under_mirrored_strategy_each_replica_applies_the_all_reduced_update():
    strategy = mirrored_strategy()
    a = _run(lambda: FusedAdam(1e-2), strategy=strategy)
    b = _run(lambda: keras.optimizers.Adam(1e-2), strategy=strategy)
    for x, y in zip(a, b):
        copies = [c.numpy() for c in x.value.values]
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1])
        np.testing.assert_allclose(copies[0], y.value.values[0].numpy(), atol=1e-6)
        assert not np.allclose(copies[0], 0.5)


def _scalar(variable):
    return float(tf.convert_to_tensor(variable))


@pytest.mark.parametrize("mirrored", [False, True])
def test_loss_scaling_skips_an_overflowing_step_but_counts_it(mirrored):
    """Non-finite (scaled) gradients: no update, the scale halves, `iterations` still advances (it is the model's
    step counter). Finite ones: unscaled, then applied (SGD; replicas' gradients are summed)."""
    strategy = mirrored_strategy() if mirrored else tf.distribute.get_strategy()
    with strategy.scope():
        opt = StepCountingLossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=4.0)
        v = keras.Variable(np.ones(3, np.float32))
        opt.build([v])

    def step(grad):
        @tf.function
        def apply():
            strategy.run(lambda: opt.apply_gradients([(tf.constant(grad, tf.float32), v)]))
        apply()
        return np.asarray(strategy.experimental_local_results(v.value)[0] if mirrored else v.numpy())

    np.testing.assert_array_equal(step([np.inf, 1.0, 1.0]), [1.0, 1.0, 1.0])
    assert _scalar(opt.iterations) == 1 and _scalar(opt.dynamic_scale) == 2.0
    replicas = strategy.num_replicas_in_sync
    np.testing.assert_allclose(step([4.0, 2.0, 0.0]), 1.0 - 0.1 * replicas * np.array([2.0, 1.0, 0.0]), atol=1e-6)
    assert _scalar(opt.iterations) == 2 and _scalar(opt.dynamic_scale) == 2.0


def test_the_fused_kernel_runs_with_this_keras():
    """FusedAdam reads Keras internals: this fails (and names them) when a Keras release drops one, while
    training keeps working through the fallback below."""
    opt = FusedAdam(1e-3)
    _run(opt, steps=1)
    assert opt.missing_internals() == []


def test_without_the_keras_internals_it_warns_and_gives_keras_adams_update(monkeypatch):
    from tf_ssinfogan.model import optimizers

    monkeypatch.setattr(optimizers, "KERAS_INTERNALS", ("_momentums", "_renamed_in_a_future_keras"))
    fused = FusedAdam(1e-2, beta_1=0.5)
    with pytest.warns(RuntimeWarning, match="_renamed_in_a_future_keras.*keras.optimizers.Adam's update"):
        a = _run(fused, steps=3)
    assert fused.missing_internals() == ["_renamed_in_a_future_keras"]
    b = _run(keras.optimizers.Adam(1e-2, beta_1=0.5), steps=3)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-7)
