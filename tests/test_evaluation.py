"""Evaluation metrics on cases with known answers."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan import config as C
from tf_ssinfogan.evaluation import judges, metrics, report
from tf_ssinfogan.data.sources import ArraySource, load_npz
from tf_ssinfogan.model.latents import LatentSpace


class _StandInGenerator:
    """Draws an image whose brightness encodes the digit code through `perm` (identity = perfect)."""

    def __init__(self, perm):
        self.latent_config = C.LatentConfig()
        self.latent_space = LatentSpace(self.latent_config)
        self.network_config = C.NetworkConfig()
        self.perm = tf.constant(perm, tf.float32)

    def generate(self, latents):
        cls = tf.gather(self.perm, tf.argmax(latents["digit"], -1))
        return tf.ones([tf.shape(cls)[0], 28, 28, 1]) * ((cls + 0.5) / 10.0)[:, None, None, None]


def _brightness_classifier():
    """Class = the decile of the mean pixel value: a perfect reader of the stand-in's images."""
    inputs = keras.Input((28, 28, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    centers = tf.constant([[(k + 0.5) / 10.0 for k in range(10)]])
    logits = keras.layers.Lambda(lambda m: -1000.0 * tf.square(m - centers))(mean)
    return keras.Model(inputs, logits)


def test_perfect_generator_scores_one():
    res = report.class_conditioned_accuracy(_StandInGenerator(list(range(10))), _brightness_classifier(), 16)
    assert res["digit"]["accuracy"] == 1.0 and res["digit"]["mapped_accuracy"] == 1.0
    assert res["digit"]["mapping"] == list(range(10)) and res["digit"]["samples"] == 160


def test_permuted_codes_are_recovered_by_the_hungarian_mapping():
    perm = [3, 0, 1, 2, 5, 4, 9, 8, 7, 6]
    res = report.class_conditioned_accuracy(_StandInGenerator(perm), _brightness_classifier(), 16)
    assert res["digit"]["accuracy"] == 0.0  # no code value means its own class
    assert res["digit"]["mapped_accuracy"] == 1.0
    assert res["digit"]["mapping"] == perm


def test_hungarian_mapping_partial_agreement():
    codes = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    preds = np.array([2, 2, 1, 0, 0, 0, 1, 1, 1])  # best: 0->2, 1->0, 2->1 with 8 of 9 agreeing
    mapping, acc, confusion = metrics.hungarian_mapping(codes, preds, 3, 3)
    assert mapping.tolist() == [2, 0, 1] and acc == pytest.approx(8 / 9)
    assert confusion.sum() == 9 and confusion[0, 2] == 2


def test_frechet_distance_known_values():
    rng = np.random.RandomState(0)
    a = rng.randn(4000, 3)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.randn(4000, 3)
    assert metrics.frechet_distance(a, b) < 0.02  # same distribution: near 0
    # N(0, I) vs N(2, I): ||mu||^2 = 3 * 4 = 12, (near-)equal covariances add (almost) nothing
    a0, b0 = a - a.mean(0), b - b.mean(0)
    assert metrics.frechet_distance(a0, b0 + 2.0) == pytest.approx(12.0, rel=0.002)
    # N(0, 1) vs N(0, 4) in 1-D: (1 + 4 - 2 * 2) = 1
    assert metrics.frechet_distance(a[:, :1], 2.0 * b[:, :1]) == pytest.approx(1.0, rel=0.05)


def test_information_bounds_are_at_most_the_entropy():
    from tf_ssinfogan.model.ssinfogan import SSInfoGAN

    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 8)
    res = report.information_bounds(m, num=64)
    assert set(res) == {"digit", "c1", "c2"}
    assert res["digit"]["entropy"] == pytest.approx(np.log(10))
    assert res["digit"]["lower_bound"] <= res["digit"]["entropy"] + 1e-6
    assert all(np.isfinite(v["lower_bound"]) for v in res.values())


@pytest.mark.slow
def test_independent_classifier_protocol_and_cache(tmp_path, monkeypatch):
    full = load_npz("")
    small = ArraySource("mnist_small", full.train_images[:3000], {"label": full.train_labels["label"][:3000]},
                        full.test_images[:3000], {"label": full.test_labels["label"][:3000]})
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path))
    code = C.CodeSpec("digit", "categorical", 10, "label")
    config = judges.JudgeConfig(architecture="mnist_cnn", epochs=2)
    judge = judges.get_judge(small, code, config)
    assert judge.meta["trained_on"] == "test split"
    assert judge.meta["validation_accuracy_on_train_split"] > 0.9  # validated on images it never saw
    assert judge.path.startswith(str(tmp_path)) and judge.path.endswith(".keras")
    again = judges.get_judge(small, code, config)  # cached: loaded, not retrained
    assert again.path == judge.path and again.meta == judge.meta
    x = tf.cast(small.train_images[:50], tf.float32) / 255.0
    np.testing.assert_allclose(judge.model.predict(x, verbose=0), again.model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        judges.load_judge(str(tmp_path / "missing.keras"))
