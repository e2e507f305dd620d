"""Data: npz loading and errors, labelled subset, annealed labelled-draw schedule, step-indexed stream, TFDS."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan.data import sources
from tf_ssinfogan import config as C
from tf_ssinfogan.data import stream as data
from conftest import tiny_source


def test_shipped_mnist_loads():
    src = sources.load_npz("")
    assert src.train_images.shape == (60000, 28, 28, 1) and src.train_images.dtype == np.uint8
    assert src.test_images.shape == (10000, 28, 28, 1)
    assert sorted(np.unique(src.train_labels["label"])) == list(range(10))


def test_npz_errors_name_the_problem(tmp_path):
    with pytest.raises(sources.DataError, match="does not exist"):
        sources.load_npz(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(sources.DataError, match="corrupt"):
        sources.load_npz(str(bad))
    good = tmp_path / "good.npz"
    np.savez(good, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.zeros(4, np.int64))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])  # an interrupted download or copy
    with pytest.raises(sources.DataError, match="truncated.npz' is corrupt"):
        sources.load_npz(str(truncated))
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(sources.DataError, match=r"lacks the arrays \['y_train', 'x_test', 'y_test'\]"):
        sources.load_npz(str(partial))
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=np.zeros((2, 28, 28), np.float32), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.int64))
    with pytest.raises(sources.DataError, match="x_train: images must be uint8"):
        sources.load_npz(str(floats))
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(3, np.int64),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.int64))
    with pytest.raises(sources.DataError, match="y_train must be a vector with one label per image"):
        sources.load_npz(str(mismatch))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x_train=np.array([object()], dtype=object), y_train=np.zeros(1, np.int64),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.int64))
    with pytest.raises(sources.DataError):  # object arrays would need unpickling: refused
        sources.load_npz(str(pickled))


def test_labelled_subset_random_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    cfg = C.DataConfig(labelled_fraction=0.05, label_seed=1234)
    a = data.select_labelled(labels, cfg)
    assert len(a) == 50 and len(set(a)) == 50
    np.testing.assert_array_equal(a, data.select_labelled(labels, cfg))  # same seed, same subset
    assert not np.array_equal(a, data.select_labelled(labels, dataclasses.replace(cfg, label_seed=1)))
    bal = data.select_labelled(labels, dataclasses.replace(cfg, labelled_selection="balanced", labelled_count=23))
    assert len(bal) == 23
    assert sorted(np.bincount(labels[bal], minlength=10)) == [2] * 7 + [3] * 3
    assert len(data.select_labelled(labels, dataclasses.replace(cfg, labelled_fraction=0.0))) == 0
    unl = labels.copy()
    unl[:500] = -1  # negative labels are unlabelled and never chosen
    assert np.all(unl[data.select_labelled(unl, dataclasses.replace(cfg, labelled_count=100))] >= 0)
    with pytest.raises(C.ConfigError, match="only 500 have labels"):
        data.select_labelled(unl, dataclasses.replace(cfg, labelled_count=501))


def test_labelled_probability_follows_reference_annealing():
    cfg = C.DataConfig()
    p = [float(data.labelled_probability(t, cfg, 0.01)) for t in (0, 99, 100, 250, 899, 900, 999, 1000, 4999)]
    np.testing.assert_allclose(p, [1.0, 1.0, 0.9, 0.8, 0.2, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    assert float(data.labelled_probability(0, cfg, 0.0)) == 0.0  # no labels: plain InfoGAN
    floored = C.DataConfig(anneal_floor=0.25)
    p = [float(data.labelled_probability(t, floored, 0.01)) for t in (0, 700, 800, 900, 4999)]
    np.testing.assert_allclose(p, [1.0, 0.3, 0.25, 0.25, 0.25], rtol=1e-6)
    assert float(data.labelled_probability(4999, floored, 0.5)) == 0.5  # the true ratio when it is higher
    assert float(data.labelled_probability(0, floored, 0.0)) == 0.0


def test_supervision_warning_for_continuous_and_binary_codes_only():
    sprites = C.ExperimentConfig(run_dir="r", latent=C.LatentConfig(
        codes=C.parse_codes("shape:cat:3:shape,x:cont:1:x,bright:bin:1:bright")))
    assert "x, bright" in sprites.supervision_warning() and "--labelled_per_batch" in sprites.supervision_warning()
    assert dataclasses.replace(sprites, data=C.DataConfig(labelled_per_batch=16)).supervision_warning() is None
    assert dataclasses.replace(sprites, data=C.DataConfig(anneal_floor=0.25)).supervision_warning() is None
    assert C.ExperimentConfig(run_dir="r").supervision_warning() is None  # the reference: categorical only


def _stream(n_train=64, batch=8, fraction=0.25, **kw):
    src = tiny_source(n_train=n_train)
    cfg = dataclasses.replace(C.DataConfig(labelled_fraction=fraction), **kw)
    return data.TrainStream(src, C.LatentConfig(), cfg, batch, (0.0, 1.0)), src


def test_stream_batches_shapes_masks_and_labels():
    stream, src = _stream()
    assert stream.num_labelled == 16
    labelled_images = {src.train_images[i].tobytes(): src.train_labels["label"][i] for i in stream.labelled_idx}
    seen_labelled = 0
    for x, y, mask in stream.dataset(0, 20):
        assert x.shape == (8, 28, 28, 1) and x.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
        m = mask.numpy()
        assert m.min() == m.max()  # a batch is either labelled or unlabelled
        if m[0] == 1:
            seen_labelled += 1
            for img, lab in zip(x.numpy(), y["label"].numpy()):
                key = np.round(img * 255).astype(np.uint8).tobytes()
                assert labelled_images[key] == lab  # labelled batches carry the true labels
        else:
            assert np.all(y["label"].numpy() == 0)  # unlabelled batches hide the labels
    assert seen_labelled == 20  # p(t) = 1 for the first 100 steps


def test_stream_is_a_pure_function_of_the_step():
    stream, _ = _stream(anneal_every=2)
    full = list(stream.dataset(0, 12))
    resumed = list(stream.dataset(7, 12))
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[2], b[2])
    masks = [float(m[0]) for _, _, m in full]
    assert 0 < sum(masks) < 12  # annealing mixes labelled and unlabelled batches


def test_stream_visits_every_image_once_per_epoch():
    stream, src = _stream(n_train=64, batch=8, fraction=0.0)
    seen = np.concatenate([np.round(x.numpy() * 255).astype(np.uint8) for x, _, _ in stream.dataset(0, 8)])
    assert len({img.tobytes() for img in seen}) == len({img.tobytes() for img in src.train_images})


def test_replica_slices_tile_the_global_batch():
    stream, _ = _stream()
    one = list(stream.dataset(0, 3))
    two = list(stream.dataset(0, 3, num_replicas=2, first_replica=0, local_replicas=2))
    assert len(two) == 6
    for s in range(3):
        np.testing.assert_array_equal(tf.concat([two[2 * s][0], two[2 * s + 1][0]], 0), one[s][0])
    with pytest.raises(C.ConfigError, match="not divisible by the 3 replicas"):
        stream.dataset(0, 1, num_replicas=3)


def test_source_must_match_code_spec_and_shape():
    src = tiny_source(classes=10)
    sources.check_source_matches(src, C.LatentConfig(), (28, 28, 1))
    with pytest.raises(C.ConfigError, match=r"expects images of shape \(32, 32, 3\)"):
        sources.check_source_matches(src, C.LatentConfig(), (32, 32, 3))
    with pytest.raises(C.ConfigError, match="code 'digit' has 5 categories, but label 'label'"):
        sources.check_source_matches(src, C.LatentConfig(codes=C.parse_codes("digit:cat:5:label")), (28, 28, 1))
    with pytest.raises(C.ConfigError, match="tied to label 'colour'"):
        sources.check_source_matches(src, C.LatentConfig(codes=C.parse_codes("digit:cat:10:colour")), (28, 28, 1))


def test_tfds_source_under_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        src = sources.load_tfds("mnist", download=False)
    assert src.train_images.shape == (24, 28, 28, 1) and src.train_images.dtype == np.uint8
    assert src.train_labels["label"].shape == (24,)
    stream = data.TrainStream(src, C.LatentConfig(), C.DataConfig(labelled_fraction=0.25), 8, (0.0, 1.0))
    x, y, mask = next(iter(stream.dataset(0, 1)))
    assert x.shape == (8, 28, 28, 1) and float(mask[0]) == 1.0


def test_mixed_batches_carry_k_labelled_images_at_every_step():
    stream, src = _stream(labelled_per_batch=3, anneal_start=0.0)  # annealing is replaced, not consulted
    labelled_images = {src.train_images[i].tobytes(): src.train_labels["label"][i] for i in stream.labelled_idx}
    seen = set()
    for x, y, mask in stream.dataset(0, 12):
        np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 0, 0, 0, 0, 0])
        pixels = np.round(x.numpy() * 255).astype(np.uint8)
        for img, lab in zip(pixels[:3], y["label"].numpy()[:3]):
            assert labelled_images[img.tobytes()] == lab  # the first 3: labelled images with their labels
            seen.add(img.tobytes())
        assert np.all(y["label"].numpy()[3:] == 0)  # the rest: labels hidden
    assert len(seen) == 16  # 36 draws walk through all 16 labelled images
    # replicas: the two slices of a step tile the one-device batch, labelled rows included
    one = list(stream.dataset(0, 2))
    two = list(stream.dataset(0, 2, num_replicas=2, first_replica=0, local_replicas=2))
    for s in range(2):
        np.testing.assert_array_equal(tf.concat([two[2 * s][0], two[2 * s + 1][0]], 0), one[s][0])
        np.testing.assert_array_equal(tf.concat([two[2 * s][2], two[2 * s + 1][2]], 0), one[s][2])


def test_labelled_shift_moves_labelled_images_only_and_resumes_exactly():
    plain, _ = _stream(labelled_per_batch=3)
    shifted, _ = _stream(labelled_per_batch=3, labelled_shift=2)
    moved = 0
    for (a, _, _), (b, _, _) in zip(plain.dataset(0, 6), shifted.dataset(0, 6)):
        np.testing.assert_array_equal(a[3:], b[3:])  # unlabelled images untouched
        moved += sum(not np.array_equal(a[i], b[i]) for i in range(3))
        # each shifted image is its plain image translated by at most 2 pixels (the reflected border aside)
        for i in range(3):
            interior = [np.array_equal(b[i, 2:-2, 2:-2], a[i, 2 - dy:26 - dy, 2 - dx:26 - dx])
                        for dy in range(-2, 3) for dx in range(-2, 3)]
            assert any(interior)
    assert moved >= 14  # of 18 draws, only the (0, 0) shifts (1 in 25) leave an image as it was
    full, resumed = list(shifted.dataset(0, 6)), list(shifted.dataset(4, 6))
    np.testing.assert_array_equal(full[4][0], resumed[0][0])  # the augmentation is a function of the step


def test_random_shift_known_offsets():
    from tf_ssinfogan.model.images import random_shift

    x = np.zeros([4, 9, 9, 1], np.uint8)
    x[:, 4, 4] = 255  # one bright pixel in the middle
    y = random_shift(tf.constant(x), 3, tf.constant([5, 6], tf.int64)).numpy()
    again = random_shift(tf.constant(x), 3, tf.constant([5, 6], tf.int64)).numpy()
    np.testing.assert_array_equal(y, again)
    for img in y:
        (r, c, _), = np.argwhere(img > 0)  # still one pixel, moved by at most 3 per axis
        assert abs(r - 4) <= 3 and abs(c - 4) <= 3
    assert len({tuple(np.argwhere(img > 0)[0]) for img in y}) > 1  # per-image offsets
    np.testing.assert_array_equal(random_shift(tf.constant(x), 0, tf.constant([5, 6], tf.int64)), x)


def test_mixed_batch_settings_are_checked():
    with pytest.raises(C.ConfigError, match="labelled_per_batch must be >= 0"):
        C.DataConfig(labelled_per_batch=-1).validate()
    with pytest.raises(C.ConfigError, match="labelled_shift must be >= 0 pixels"):
        C.DataConfig(labelled_shift=-2).validate()
    cfg = C.ExperimentConfig(data=C.DataConfig(labelled_per_batch=128))
    with pytest.raises(C.ConfigError, match=r"labelled_per_batch \(128\) must be smaller than batch_size \(128\)"):
        cfg.validate()
    with pytest.raises(C.ConfigError, match="pseudo_label_threshold must be in"):
        C.ObjectiveConfig(pseudo_label_threshold=0.3).validate()


def test_affine_images_known_rotation_and_shift():
    from tf_ssinfogan.model.images import affine_images

    x = np.zeros([3, 9, 9, 1], np.float32)
    x[:, 2, 4] = 1.0  # two pixels above the centre (4, 4)
    y = affine_images(x, tf.constant([np.pi / 2, 0.0, np.pi]), tf.constant([[0.0, 0.0], [1.0, -2.0], [0.0, 0.0]]))
    assert [tuple(np.argwhere(img[..., 0] > 0.5)[0]) for img in y.numpy()] == [(4, 6), (3, 2), (6, 4)]
    np.testing.assert_allclose(affine_images(x, tf.zeros([3]), tf.zeros([3, 2])), x, atol=1e-6)  # identity


def test_labelled_rotation_turns_labelled_images_only_and_resumes_exactly():
    src = tiny_source()
    src.train_images[:] = 0
    src.train_images[:, 6:22, 13:15] = 255  # a vertical bar: a rotation tilts it, a shift does not
    cfg = dataclasses.replace(C.DataConfig(labelled_fraction=0.25), labelled_per_batch=3, labelled_rotation=30.0)
    stream = data.TrainStream(src, C.LatentConfig(), cfg, 8, (0.0, 1.0))
    batches = list(stream.dataset(0, 4))
    for x, _, _ in batches:
        x = x.numpy()
        np.testing.assert_allclose(x[3:], src.train_images[:5].astype(np.float32) / 255.0)  # unlabelled: as stored
        for img in x[:3]:
            rows = np.argwhere(img[..., 0] > 0.5)
            tilt = np.polyfit(rows[:, 0], rows[:, 1], 1)[0]  # columns per row along the bar
            assert abs(tilt) <= np.tan(np.radians(30.5)) and abs(img.sum() - 32.0) < 4.0
    assert any(abs(np.polyfit(*np.argwhere(x.numpy()[i, ..., 0] > 0.5)[:, :2].T, 1)[0]) > 0.05
               for x, _, _ in batches for i in range(3))  # some are tilted
    np.testing.assert_array_equal(batches[2][0], list(stream.dataset(2, 3))[0][0])  # a function of the step
    with pytest.raises(C.ConfigError, match="labelled_rotation must be in"):
        C.DataConfig(labelled_rotation=200.0).validate()


def test_random_flip_mirrors_about_half_and_is_a_function_of_the_seed():
    from tf_ssinfogan.model.images import random_flip

    x = np.arange(64 * 3 * 4, dtype=np.float32).reshape([64, 3, 4, 1])
    y = random_flip(tf.constant(x), tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_array_equal(y, random_flip(tf.constant(x), tf.constant([3, 4], tf.int64)).numpy())
    mirrored = [np.array_equal(b, a[:, ::-1]) for a, b in zip(x, y)]
    kept = [np.array_equal(b, a) for a, b in zip(x, y)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is either mirrored left-right or as it was
    assert 20 <= sum(mirrored) <= 44  # about half (binomial 64, 1/2: 32 +- 12 is beyond 3 sigma)


def test_labelled_flip_mirrors_labelled_images_only_and_resumes_exactly():
    plain, _ = _stream(labelled_per_batch=3)
    flipped, _ = _stream(labelled_per_batch=3, labelled_flip=True)
    mirrored = 0
    for (a, _, _), (b, _, _) in zip(plain.dataset(0, 8), flipped.dataset(0, 8)):
        a, b = a.numpy(), b.numpy()
        np.testing.assert_array_equal(a[3:], b[3:])  # unlabelled images untouched
        for i in range(3):
            assert np.array_equal(b[i], a[i]) or np.array_equal(b[i], a[i][:, ::-1])
            mirrored += not np.array_equal(b[i], a[i])
    assert 4 <= mirrored <= 20  # of 24 labelled draws, about half
    np.testing.assert_array_equal(list(flipped.dataset(0, 6))[5][0], list(flipped.dataset(5, 6))[0][0])
