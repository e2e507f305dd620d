"""Slant and thickness measured from pixels (data/moments.py): known values on drawn strokes, the rank scale, the
measured label columns of a source, and the judge-free correlation of a model's codes with them."""

import dataclasses

import numpy as np
import pytest

from conftest import tiny_source
from tf_ssinfogan import config as C
from tf_ssinfogan.data import moments, sources


def _bar(width=2, length=20, shear=0.0, size=28):
    """A stroke `width` pixels wide and `length` tall, its column shifted by `shear` pixels per row upwards."""
    img = np.zeros((size, size), np.uint8)
    top = (size - length) // 2
    for y in range(top, top + length):
        x0 = int(round(size / 2 - width / 2 + shear * (top + length / 2 - y)))
        img[y, x0:x0 + width] = 255
    return img


def test_slant_of_upright_and_sheared_strokes():
    upright, right, left = _bar(), _bar(shear=0.5), _bar(shear=-0.25)
    s = moments.slant(np.stack([upright, right, left]))
    np.testing.assert_allclose(s[0], 0.0, atol=1e-9)
    np.testing.assert_allclose(s[1], 0.5, atol=0.03)  # rounding of the drawn columns
    np.testing.assert_allclose(s[2], -0.25, atol=0.03)
    assert moments.slant(np.zeros((1, 28, 28), np.uint8))[0] == 0.0  # no ink


def test_thickness_of_bars_is_area_over_half_perimeter():
    t = moments.thickness(np.stack([_bar(width=2), _bar(width=4), np.zeros((28, 28), np.uint8)]))
    np.testing.assert_allclose(t[0], 2 * 40 / (2 * 20 + 2 * 2))  # 1.818...
    np.testing.assert_allclose(t[1], 2 * 80 / (2 * 20 + 2 * 4))  # 3.333...
    assert t[2] == 0.0
    # float images in [0, 1] read as their uint8 values; a [N, H, W, 1] batch as [N, H, W]
    np.testing.assert_allclose(moments.thickness(_bar()[None, :, :, None] / 255.0), t[:1])


def test_rank_scale_maps_training_values_to_uniform_minus_one_one():
    train = np.random.RandomState(0).lognormal(size=5001)
    scale = moments.MomentScale(train)
    mapped = scale(train)
    assert mapped.min() == -1.0 and mapped.max() == 1.0
    np.testing.assert_allclose(scale(np.median(train)), 0.0, atol=2e-3)
    np.testing.assert_allclose(np.percentile(mapped, [10, 50, 90]), [-0.8, 0.0, 0.8], atol=0.01)
    assert np.all(np.diff(scale(np.sort(train))) >= 0)  # monotone
    assert scale(np.array([train.min() - 5, train.max() + 5])).tolist() == [-1.0, 1.0]  # clipped outside


def test_measured_label_columns_are_added_to_both_splits():
    src = tiny_source(n_train=40, n_test=10)
    out = sources.with_measured_labels(src, ("slant", "thickness"))
    assert out.column("slant").kind == "continuous" and out.column("thickness").kind == "continuous"
    assert out.train_labels["slant"].shape == (40,) and out.test_labels["thickness"].shape == (10,)
    assert out.train_labels["slant"].dtype == np.float32
    assert set(out.train_labels) == {"label", "slant", "thickness"} and out.name == src.name
    scales = moments.fit_scales(src.train_images)
    np.testing.assert_array_equal(out.test_labels["slant"], scales["slant"](moments.slant(src.test_images)))
    assert sources.with_measured_labels(src, ()) is src
    colour = tiny_source(shape=(32, 32, 3))
    with pytest.raises(sources.DataError, match="28x28 grey digits"):
        sources.with_measured_labels(colour, ("slant",))


def test_unknown_measured_label_is_refused_by_the_config():
    with pytest.raises(C.ConfigError, match="measured_labels"):
        dataclasses.replace(C.DataConfig(), measured_labels=("slant", "width")).validate()
    cfg = C.ExperimentConfig(run_dir="r", data=C.DataConfig(measured_labels=("slant",)))
    assert C.ExperimentConfig.from_dict(cfg.to_dict()).data.measured_labels == ("slant",)
