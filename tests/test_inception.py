"""FID/KID/IS through InceptionV3 without ImageNet weights (random init at 75x75), and where the weights
come from. Nothing is downloaded."""

import h5py
import keras
import numpy as np
import pytest

from tf_ssinfogan.evaluation import inception, metrics
from tf_ssinfogan.data.sources import load_npz


@pytest.fixture(scope="module")
def digits():
    src = load_npz("")
    return src.test_images[:300]  # grey 28x28: the extractor repeats the channel and resizes


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(inception75, digits):
    x = digits[:100]
    feats = inception75(x)
    assert feats["pool"].shape == (100, 2048) and feats["probs"].shape == (100, 1000)
    rng = np.random.RandomState(1)
    fids = []
    for std in (0.0, 16.0, 48.0, 96.0):
        noisy = np.clip(x + rng.normal(0.0, std, x.shape), 0, 255).astype(np.uint8) if std else x
        fids.append(metrics.frechet_distance(feats["pool"], inception75(noisy)["pool"]))
    assert abs(fids[0]) <= 1e-4 * fids[1]  # the same images: 0 up to rounding
    assert fids[1] < fids[2] < fids[3], fids  # monotone in the noise added


def test_kid_of_two_samples_of_one_distribution_is_about_zero(inception75, digits):
    a, b = inception75(digits[:150])["pool"], inception75(digits[150:300])["pool"]
    same, std = metrics.kernel_inception_distance(a, b, num_subsets=20, subset_size=100)
    rng = np.random.RandomState(2)
    noisy = np.clip(digits[150:300] + rng.normal(0.0, 64.0, (150, 28, 28, 1)), 0, 255).astype(np.uint8)
    other, _ = metrics.kernel_inception_distance(a, inception75(noisy)["pool"], num_subsets=20, subset_size=100)
    assert abs(same) < 0.05 * other and abs(same) < 3 * std + 1e-3 * other
    score, _ = metrics.inception_score(inception75(digits[:100])["probs"], splits=2)
    assert 1.0 <= score <= 1000.0


def _keras_h5(model, path):
    """Weights in the legacy Keras .h5 layout of the ImageNet files Keras downloads."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return str(path)


def test_weights_come_from_a_file_or_the_keras_cache_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(inception, "keras_cache_dirs", lambda: [str(tmp_path / "keras_home" / "models")])
    with pytest.raises(inception.WeightsError, match=r"not found.*inception_v3_weights_tf_dim_ordering_tf_"
                                                     r"kernels_notop\.h5.*--inception_weights=PATH"):
        inception.resolve_weights("")
    with pytest.raises(inception.WeightsError, match="does not exist"):
        inception.resolve_weights(str(tmp_path / "missing.h5"))
    keras.utils.set_random_seed(3)
    net = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg", input_shape=(75, 75, 3))
    cached = tmp_path / "keras_home" / "models" / inception.NOTOP_FILE
    cached.parent.mkdir(parents=True)
    _keras_h5(net, cached)
    assert inception.resolve_weights("") == str(cached) and not inception.has_classifier_head(str(cached))
    with pytest.raises(inception.WeightsError, match="needs InceptionV3's classification head"):
        inception.resolve_weights(str(cached), need_top=True)  # the Inception Score needs the head
    loaded = inception.InceptionExtractor(inception.build_inception(str(cached), include_top=False, input_size=75), 75)
    x = np.random.RandomState(0).randint(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    want = net.predict(loaded.preprocess(x), verbose=0)
    np.testing.assert_allclose(loaded(x)["pool"], want, rtol=1e-4, atol=1e-6)


def test_images_of_any_size_and_channel_count_in_any_order(inception75):
    """Colour images of two sizes, then grey ones (traced once shapes vary): grey equals its RGB repetition."""
    rng = np.random.RandomState(4)
    for shape in [(3, 32, 32, 3), (5, 40, 36, 3), (4, 28, 28, 1)]:
        x = rng.randint(0, 256, shape).astype(np.uint8)
        out = inception75(x)["pool"]
        assert out.shape == (shape[0], 2048)
    np.testing.assert_allclose(out, inception75(np.repeat(x, 3, axis=-1))["pool"], rtol=1e-5, atol=1e-7)
