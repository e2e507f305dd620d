"""D's (and Q's) BatchNorm statistics come from real images only, in every phase, under MirroredStrategy and
mixed precision; an exported `classify` reads real images as a batch-statistics reading does."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy, tiny_config, tiny_source
from tf_ssinfogan import config as C
from tf_ssinfogan.data import stream as data
from tf_ssinfogan.serving import saved_model
from tf_ssinfogan.training import trainer
from tf_ssinfogan.model.images import images_to_float
from tf_ssinfogan.model.ssinfogan import SSInfoGAN, precision_policy
from tf_ssinfogan.model.networks import BatchNorm
from tf_ssinfogan.data.sources import DEFAULT_NPZ, ArraySource

BATCH = 8


def _model(seed=1, precision="float32", **kwargs):
    keras.utils.set_random_seed(seed)
    with precision_policy(precision):
        m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), BATCH, C.ObjectiveConfig(**kwargs), seed=seed)
    m.compile()
    return m


def _batch():
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), C.DataConfig(labelled_fraction=0.25), BATCH, (0.0, 1.0))
    return next(iter(stream.dataset(0, 1)))


def _statistics(m):
    return [v.numpy().copy() for v in m.discriminator.non_trainable_variables]


def _assert_same(a, b, atol=0.0):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def test_batch_norm_without_update_normalises_by_the_batch_and_keeps_its_statistics():
    bn = BatchNorm(momentum=0.9, epsilon=1e-5)
    x = tf.constant(np.random.RandomState(0).normal(3.0, 2.0, size=(64, 5)), tf.float32)
    bn(x)  # build
    out = bn(x, training=True, update_statistics=False).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 1.0)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)  # gamma 1, beta 0 at init
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)
    same = bn(x, training=True).numpy()  # Keras's own training call: same output, statistics moved
    np.testing.assert_allclose(out, same, atol=1e-6)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * x.numpy().mean(0), rtol=1e-5)


def test_generator_phase_leaves_d_statistics_unchanged():
    m = _model()
    before = _statistics(m)
    m.generator_phase(BATCH)
    _assert_same(before, _statistics(m))


@pytest.mark.parametrize("options", [{}, {"pseudo_label_weight": 1.0, "pseudo_label_shift": 2.0}],
                         ids=["reference", "consistency_view"])
def test_discriminator_phase_statistics_come_from_the_real_pass_alone(options):
    """The D/Q phase moves D's statistics exactly as one training-mode pass over the real batch does: its passes
    over fakes (and over the augmented view) leave them alone."""
    images, labels, mask = _batch()
    m = _model(**options)
    reference = _model(**options)  # the same initial weights
    m.discriminator_phase(images, labels, mask)
    reference.discriminator(images, training=True)
    moved = [not np.array_equal(a, b) for a, b in zip(_statistics(m), _statistics(_model(**options)))]
    assert all(moved)  # every statistic learnt from the reals
    _assert_same(_statistics(m), _statistics(reference), atol=1e-6)


@pytest.mark.slow
def test_a_mirrored_train_step_moves_d_statistics_as_one_real_pass_does():
    """Two replicas with synchronised BN, one whole `fit` step (D/Q phase and G phase): D's statistics equal those
    of one training-mode pass over the real global batch on one device."""
    network = dataclasses.replace(C.NetworkConfig(), sync_batch_norm=True)
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), C.DataConfig(labelled_fraction=0.25), BATCH, (0.0, 1.0))
    strategy = mirrored_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(1)
        mirrored = SSInfoGAN(C.LatentConfig(), network, BATCH, seed=1)
        mirrored.compile()
    keras.utils.set_random_seed(1)
    one = SSInfoGAN(C.LatentConfig(), network, BATCH, seed=1)
    for a, b in zip(mirrored.discriminator.variables, one.discriminator.variables):
        b.assign(a.numpy())
    mirrored.fit(stream.distributed_dataset(strategy, 0, 1), epochs=1, steps_per_epoch=1, verbose=0)
    images, _, _ = next(iter(stream.dataset(0, 1)))
    one.discriminator(images, training=True)
    assert mirrored.current_step() == 1
    _assert_same(_statistics(mirrored), _statistics(one), atol=1e-5)


def test_mixed_precision_phases_keep_fakes_out_of_the_statistics():
    images, labels, mask = _batch()
    m = _model(precision="mixed_bfloat16")
    before = _statistics(m)
    m.generator_phase(BATCH)
    _assert_same(before, _statistics(m))
    reference = _model(precision="mixed_bfloat16")
    m.discriminator_phase(images, labels, mask)
    reference.discriminator(images, training=True)
    _assert_same(_statistics(m), _statistics(reference), atol=1e-5)


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """80 steps of the reference networks on 2,000 real MNIST digits (20% labelled), exported."""
    with np.load(DEFAULT_NPZ) as f:
        source = ArraySource("mnist2000", f["x_train"][:2000, :, :, None], {"label": f["y_train"][:2000].astype(np.int64)},
                             f["x_test"][:500, :, :, None], {"label": f["y_test"][:500].astype(np.int64)})
    cfg = tiny_config(tmp_path_factory.mktemp("bn"))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=32, steps=80, steps_per_epoch=40,
                                                              checkpoint_every_epochs=2, grid_every_epochs=2),
                              data=dataclasses.replace(cfg.data, labelled_fraction=0.2))
    result = trainer.train(cfg, source=source)
    return cfg, source, result


def _readings(served_model, model, source, data_range):
    """(exported classify_uint8's digit probabilities, the batch-statistics reading of the same real images)."""
    served = served_model.signatures["classify_uint8"](images=tf.constant(source.test_images))["digit_probs"].numpy()
    x = images_to_float(tf.constant(source.test_images), data_range)
    return served, model.classify(x, batch_statistics=True)["digit"].numpy()


@pytest.mark.slow
def test_exported_classify_equals_a_batch_statistics_reading_of_real_images(mnist_run, tmp_path):
    cfg, source, result = mnist_run
    labels = source.test_labels["label"]
    model = saved_model.restore_run(cfg.run_dir)
    served, batch = _readings(tf.saved_model.load(result.export_path), model, source, cfg.network.data_range)
    # the run's own export, 80 steps in: the moving statistics lag the weights by about 10 steps (momentum 0.9)
    # (measured: 82.8% vs 86.0%; before the fix 78.6% vs 86.0%)
    assert abs(np.mean(served.argmax(1) == labels) - np.mean(batch.argmax(1) == labels)) < 0.05
    assert np.mean(served.argmax(1) == labels) > 0.6  # a classifier of real digits, not a constant
    # With the weights held still (learning rates 0) for 60 more steps the moving statistics settle on what D
    # sees in training: real images only, so the export reads 500 real test digits as batch statistics do.
    # (Measured: agreement 98.0%, mean |difference| 0.006; before the fix, with two of three passes per step
    # over fakes, 82.6% and 0.043.)
    model.d_optimizer.learning_rate.assign(0.0)
    model.g_optimizer.learning_rate.assign(0.0)
    stream = data.TrainStream(source, cfg.latent, cfg.data, cfg.train.batch_size, cfg.network.data_range)
    step = tf.function(model.train_step)  # graph mode, as fit runs it (eagerly, 60 steps take seconds more)
    for batch_data in stream.dataset(80, 140):
        step(batch_data)
    path = saved_model.export_saved_model(model, str(tmp_path))
    served, batch = _readings(tf.saved_model.load(path), model, source, cfg.network.data_range)
    assert np.mean(served.argmax(1) == batch.argmax(1)) >= 0.97
    assert np.abs(served - batch).mean() < 0.01
