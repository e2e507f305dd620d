"""SSInfoGAN train_step: each phase updates only what it should; the step runs under MirroredStrategy."""

import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan import config as C
from tf_ssinfogan.data import stream as data
from tf_ssinfogan.model.ssinfogan import SSInfoGAN
from conftest import mirrored_strategy, tiny_source

BATCH = 8


def _model(q_ss_on_fakes=False, seed=1):
    import keras

    keras.utils.set_random_seed(seed)
    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, q_ss_on_fakes=q_ss_on_fakes, seed=seed)
    m.compile()
    return m


def _batch(labelled=True):
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), C.DataConfig(labelled_fraction=0.25 if labelled else 0.0),
                              BATCH, (0.0, 1.0))
    return next(iter(stream.dataset(0, 1)))


def _snapshot(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def test_discriminator_phase_updates_d_and_q_only():
    m = _model()
    images, labels, mask = _batch()
    g_before = _snapshot(m.generator.trainable_variables)
    d_before = _snapshot(m.discriminator.trainable_variables)
    m.discriminator_phase(images, labels, mask)
    assert not any(_changed(g_before, m.generator.trainable_variables))
    assert all(_changed(d_before, m.discriminator.trainable_variables))  # trunk, D, Q_ss and Q_us heads
    assert int(m.d_optimizer.iterations) == 1 and int(m.g_optimizer.iterations) == 0


def test_generator_phase_updates_g_only():
    m = _model()
    g_before = _snapshot(m.generator.trainable_variables)
    d_before = _snapshot(m.discriminator.trainable_variables)
    m.generator_phase(BATCH)
    assert all(_changed(g_before, m.generator.trainable_variables))
    assert not any(_changed(d_before, m.discriminator.trainable_variables))
    assert m.current_step() == 1


def test_q_ss_learns_from_labelled_reals_or_from_fakes_only_in_plain_infogan():
    images, labels, _ = _batch()
    unlabelled = tf.zeros([BATCH])
    m = _model(q_ss_on_fakes=False)
    before = _snapshot([m.discriminator.q_ss_head.kernel])
    m.discriminator_phase(images, labels, unlabelled)
    assert not any(_changed(before, [m.discriminator.q_ss_head.kernel]))  # no labels, no Q_ss update
    m.discriminator_phase(images, labels, tf.ones([BATCH]))
    assert all(_changed(before, [m.discriminator.q_ss_head.kernel]))
    infogan = _model(q_ss_on_fakes=True)
    before = _snapshot([infogan.discriminator.q_ss_head.kernel])
    infogan.discriminator_phase(images, labels, unlabelled)
    assert all(_changed(before, [infogan.discriminator.q_ss_head.kernel]))  # InfoGAN: Q_ss learns on fakes


def test_train_step_reports_every_metric_and_learns_labels():
    m = _model()
    images, labels, mask = _batch()
    logs = {}
    for _ in range(15):
        logs = m.train_step((images, labels, mask))
    assert set(logs) == {"d_loss", "g_loss", "d_adv", "g_adv", "q_ss_real", "q_ss_fake", "li_ss", "q_ss_acc",
                         "q_us_fake", "li_us"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert m.current_step() == 15
    # Q_ss fits the labelled batch: its cross-entropy falls below chance (ln 10 = 2.30)
    probs = m.discriminator(images, training=True)["q"]["digit"]
    ce = tf.keras.losses.sparse_categorical_crossentropy(labels["label"], probs, from_logits=True)
    assert float(tf.reduce_mean(ce)) < 1.0


def test_latents_differ_per_replica_and_step():
    m = _model()
    a, b = m.sample_latents(4), m.sample_latents(4)
    assert not np.allclose(a["noise"], b["noise"])


def test_step_under_mirrored_strategy_on_two_cpu_devices():
    strategy = mirrored_strategy()
    with strategy.scope():
        m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH)
        m.compile()
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), C.DataConfig(labelled_fraction=0.25), BATCH, (0.0, 1.0))
    history = m.fit(stream.distributed_dataset(strategy, 0, 3), epochs=1, steps_per_epoch=3, verbose=0)
    assert m.current_step() == 3
    for name, values in history.history.items():
        assert np.isfinite(values[-1]), name
    # replicas draw different latents (each takes its own slice of one global draw)
    per_replica = strategy.run(lambda: m.sample_latents(2)["noise"])
    a, b = strategy.experimental_local_results(per_replica)
    assert not np.allclose(a.numpy(), b.numpy())


def test_reuse_fakes_is_the_g_phase_on_the_d_phase_latents():
    """reuse_fakes (the default) gives G the update of a G phase recomputed on the D phase's latents."""
    import keras

    images, labels, mask = _batch()

    def build(reuse):
        keras.utils.set_random_seed(3)
        m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, C.ObjectiveConfig(reuse_fakes=reuse), seed=3)
        m.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
        return m

    reused, manual = build(True), build(False)
    assert C.ObjectiveConfig().reuse_fakes and reused.objective.reuse_fakes and not manual.objective.reuse_fakes
    g_before = _snapshot(reused.generator.trainable_variables)
    reused.train_step((images, labels, mask))
    # By hand: the D phase on one draw, then G's forward pass again (after D's update) for the G phase
    latents, fakes = manual.make_fakes(BATCH)
    manual.discriminator_phase(images, labels, mask, (latents, fakes))
    tape = tf.GradientTape()
    with tape:
        again = manual.generate(latents, training=True)
    manual.generator_phase(BATCH, (latents, again), tape)
    for a, b in zip(reused.trainable_variables, manual.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    assert all(_changed(g_before, reused.generator.trainable_variables))
    # One latent draw per step instead of two
    fresh = build(False)
    fresh.train_step((images, labels, mask))
    assert int(reused.seed_generator.state[1]) == 1 and int(fresh.seed_generator.state[1]) == 2


def test_pseudo_labels_of_each_kind_known_values():
    from tf_ssinfogan.model.latents import KINDS

    target, confident = KINDS["categorical"].pseudo_label(tf.constant([[3.0, 0.0, 0.0], [0.1, 0.0, 0.0]]), 0.9)
    np.testing.assert_array_equal(target, [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(confident, [1.0, 0.0])  # softmax max 0.909 and 0.355
    target, confident = KINDS["binary"].pseudo_label(tf.constant([[3.0, -3.0], [3.0, 0.0]]), 0.9)
    np.testing.assert_array_equal(target, [[1, 0], [1, 0]])
    np.testing.assert_array_equal(confident, [1.0, 0.0])  # every attribute must be sure: 0.953/0.953, 0.953/0.5
    assert KINDS["continuous"].pseudo_label(tf.constant([[0.3]]), 0.9) is None


def test_pseudo_label_loss_known_value_and_labelled_mean_over_k():
    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH,
                  C.ObjectiveConfig(pseudo_label_weight=1.0, pseudo_label_threshold=0.9), labelled_per_batch=2)
    m.compile()
    assert m.labelled_scale == 4.0 and "pseudo_used" in m.tracked  # mean over the 2 labelled of 8
    logits = np.zeros([3, 10], np.float32)
    logits[:, 3] = 5.0  # p(3) = e^5 / (e^5 + 9) = 0.9428: confident
    logits[1, 3] = 1.0  # p(3) = e / (e + 9) = 0.232: not
    q = {"digit": tf.constant(logits), "c1": tf.zeros([3, 1]), "c2": tf.zeros([3, 1])}
    loss = m._pseudo_label_terms(q, q, tf.constant([1.0, 1.0, 0.0]))  # the third is labelled: no pseudo-label
    np.testing.assert_allclose(loss, [-np.log(np.exp(5) / (np.exp(5) + 9)), 0.0, 0.0], rtol=1e-5)
    assert float(m.tracked["pseudo_used"].result()) == pytest.approx(0.5)  # 1 of the 2 unlabelled
    flat = {name: tf.zeros_like(v) for name, v in q.items()}  # consistency: the loss of another view's output
    loss = m._pseudo_label_terms(q, flat, tf.constant([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(loss, [np.log(10.0), 0.0, np.log(10.0)], rtol=1e-5)  # uniform vs class 3
    assert SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH).labelled_scale == 1.0  # reference batches
    assert m.unlabelled_real_scale is None  # D's real term sees the labelled images too, by default
    apart = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, C.ObjectiveConfig(adversarial_labelled=False),
                      labelled_per_batch=2)
    assert apart.unlabelled_real_scale == pytest.approx(8 / 6)  # the mean over the 6 unlabelled


def test_train_step_with_mixed_batches_shifts_and_pseudo_labels_learns_the_labels():
    import keras

    keras.utils.set_random_seed(2)
    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, C.ObjectiveConfig(
        pseudo_label_weight=1.0, pseudo_label_threshold=0.5, pseudo_label_shift=2, q_ss_fake_weight=1.0),
        labelled_per_batch=4)
    m.compile()
    cfg = C.DataConfig(labelled_fraction=0.25, labelled_per_batch=4, labelled_shift=1)
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), cfg, BATCH, (0.0, 1.0))
    step = tf.function(m.train_step)
    first = None
    for images, labels, mask in stream.dataset(0, 30):
        logs = step((images, labels, mask))
        first = first if first is not None else float(logs["q_ss_real"])
    assert float(logs["q_ss_real"]) < first  # Q_ss fits the 16 labelled images
    assert 0.0 <= float(logs["pseudo_used"]) <= 1.0 and np.isfinite(float(logs["d_loss"]))


def test_moving_averages_of_d_and_g_known_values_swapped_in_for_evaluation_only():
    import keras

    from tf_ssinfogan.model.optimizers import make_adam

    keras.utils.set_random_seed(4)
    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH)
    m.compile(d_optimizer=make_adam(1e-3, 0.5, 0.999, "d_adam", ema_momentum=0.5),
              g_optimizer=make_adam(1e-3, 0.5, 0.999, "g_adam", ema_momentum=0.25))
    images, labels, mask = _batch()
    step = tf.function(m.train_step)
    variables = m.discriminator.trainable_variables + m.generator.trainable_variables
    momentum = [0.5] * len(m.discriminator.trainable_variables) + [0.25] * len(m.generator.trainable_variables)
    expected = None
    for _ in range(3):
        step((images, labels, mask))
        raw = _snapshot(variables)
        # Keras's EMA: the first update copies the weights, then average = m * average + (1 - m) * weights
        expected = raw if expected is None else [k * a + (1 - k) * w for a, w, k in zip(expected, raw, momentum)]
    with m.averaged_weights():
        for v, e in zip(variables, expected):
            np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-7)
        assert any(not np.allclose(v.numpy(), w) for v, w in zip(variables, raw))
    for v, w in zip(variables, raw):  # training goes on with the raw weights
        np.testing.assert_array_equal(v.numpy(), w)
    assert m.use_averaged_weights() and np.allclose(variables[0].numpy(), expected[0], rtol=1e-5, atol=1e-7)
    plain = _model()
    assert not plain.use_averaged_weights()  # no average kept: nothing to swap
    with plain.averaged_weights():
        pass


def _guided(seed=5, **kw):
    import keras

    keras.utils.set_random_seed(seed)
    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, C.ObjectiveConfig(guide_head=True, **kw))
    m.compile()
    return m


def test_guide_head_outputs_the_semi_supervised_codes_with_its_own_1024x10_layer():
    from test_networks import D_PARAMS

    m = _guided()
    out = m.discriminator(tf.zeros([2, 28, 28, 1]))
    assert sorted(out["q_guide"]) == ["digit"] and out["q_guide"]["digit"].shape == (2, 10)
    assert m.discriminator.count_params() == D_PARAMS + 1024 * 10 + 10  # one more FC on the 1024-d trunk
    assert "q_guide_real" in m.tracked
    plain = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH)
    assert "q_guide" not in plain.discriminator(tf.zeros([1, 28, 28, 1]))


def test_g_code_term_goes_through_the_guide_head_known_value():
    # guide head all zeros: uniform over 10 digits, so G's semi-supervised code loss is ln 10 whatever Q_ss says
    m = _guided()
    for v in m.discriminator.q_guide_head.weights:
        v.assign(tf.zeros_like(v))
    m.generator_phase(BATCH)
    assert float(m.tracked["q_ss_fake"].result()) == pytest.approx(np.log(10.0), abs=1e-5)
    assert float(m.tracked["li_ss"].result()) == pytest.approx(0.0, abs=1e-5)  # log(1/10) + ln 10
    # without the guide the same zeroing of the Q_ss head gives the same value, and the guide's does not matter
    n = _model()
    for v in n.discriminator.q_ss_head.weights:
        v.assign(tf.zeros_like(v))
    n.generator_phase(BATCH)
    assert float(n.tracked["q_ss_fake"].result()) == pytest.approx(np.log(10.0), abs=1e-5)


def test_guide_head_learns_only_from_labelled_reals_q_ss_head_also_from_pseudo_labels_and_fakes():
    m = _guided(pseudo_label_weight=1.0, pseudo_label_threshold=0.5, q_ss_fake_weight=1.0)
    images, labels, _ = _batch()
    guide, head = m.discriminator.q_guide_head.trainable_variables, m.discriminator.q_ss_head.trainable_variables
    g0, h0 = _snapshot(guide), _snapshot(head)
    m.discriminator_phase(images, labels, tf.zeros([BATCH], tf.bool))  # no labelled image in the batch
    assert not any(_changed(g0, guide)) and all(_changed(h0, head))
    m.discriminator_phase(images, labels, tf.ones([BATCH], tf.bool))  # all labelled
    assert all(_changed(g0, guide))
    assert float(m.tracked["q_guide_real"].result()) == pytest.approx(np.log(10.0), abs=0.5)


def test_guide_head_model_copies_to_float32_and_needs_labels():
    from tf_ssinfogan.rundir import checkpoints
    from tf_ssinfogan.config import ConfigError, ExperimentConfig, TrainConfig

    GUIDED = C.ObjectiveConfig(guide_head=True)
    m = _guided()
    assert m.float32_copy() is m
    with pytest.raises(ConfigError, match="guide_head needs labelled images"):
        checkpoints.build_model(ExperimentConfig(objective=GUIDED), 0.0)  # none found in the data
    for data in (C.DataConfig(labelled_fraction=0.0), C.DataConfig(labelled_count=0)):  # none asked for: refused
        with pytest.raises(ConfigError, match="guide_head needs labelled images"):  # before anything is written
            ExperimentConfig(run_dir="r", data=data, objective=GUIDED).validate()
    ExperimentConfig(run_dir="r", data=C.DataConfig(labelled_count=10), objective=GUIDED).validate()
    assert checkpoints.build_model(ExperimentConfig(objective=GUIDED, train=TrainConfig(precision="mixed_bfloat16")),
                              0.01).float32_copy().guide_head


def test_labelled_row_metrics_are_nan_not_zero_without_labelled_rows():
    m = _model()
    images, labels, _ = _batch()
    logs = m.train_step((images, labels, tf.zeros([BATCH])))
    assert np.isnan(float(logs["q_ss_real"])) and np.isnan(float(logs["q_ss_acc"]))  # nothing was measured
    assert np.isfinite(float(logs["d_loss"])) and np.isfinite(float(logs["q_ss_fake"]))
    logs = m.train_step((images, labels, tf.ones([BATCH])))
    assert np.isfinite(float(logs["q_ss_real"])) and 0.0 <= float(logs["q_ss_acc"]) <= 1.0
    assert float(logs["q_ss_real"]) > 0.0


def test_nan_guard_accepts_unmeasured_metrics_but_not_nan_losses():
    from tf_ssinfogan.training.callbacks import NaNGuard

    guard = NaNGuard()
    guard.set_model(_model())
    guard.on_train_batch_end(0, {"q_ss_real": float("nan"), "q_ss_acc": float("nan"), "d_loss": 1.0})
    with pytest.raises(FloatingPointError, match="d_loss"):
        guard.on_train_batch_end(1, {"q_ss_real": 1.0, "d_loss": float("nan")})



def test_augmented_view_with_flip_only_mirrors_images_and_trains():
    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, C.ObjectiveConfig(
        pseudo_label_weight=1.0, pseudo_label_threshold=0.5, pseudo_label_flip=True), labelled_per_batch=4)
    m.compile()
    images = tf.random.stateless_uniform([BATCH, 28, 28, 1], [1, 2])
    view = m.augmented_view(images).numpy()
    mirrored = [np.array_equal(v, x[:, ::-1]) for x, v in zip(images.numpy(), view)]
    assert all(m_ or np.array_equal(v, x) for m_, x, v in zip(mirrored, images.numpy(), view))
    assert 0 < sum(mirrored) < BATCH  # some mirrored, some kept (a fresh draw per call)
    cfg = C.DataConfig(labelled_fraction=0.25, labelled_per_batch=4, labelled_flip=True)
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), cfg, BATCH, (0.0, 1.0))
    for batch in stream.dataset(0, 2):
        logs = m.train_step(batch)
    assert np.isfinite(float(logs["d_loss"])) and 0.0 <= float(logs["pseudo_used"]) <= 1.0
