"""Data sets built offline (data/synthetic.py): deterministic, labels that match the pixels, measurable samples."""

import hashlib

import numpy as np
import pytest

from tf_ssinfogan.evaluation import metrics
from tf_ssinfogan.data import synthetic as S
from tf_ssinfogan.data.sources import load_npz


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def mnist_digits():
    return load_npz("").train_images[:600, ..., 0]


def test_colour_digits_are_deterministic_and_their_colours_readable(mnist_digits):
    a = S.colour_digits(mnist_digits, seed=5)
    b = S.colour_digits(mnist_digits, seed=5)
    assert _digest(*a) == _digest(*b)  # same seed, same bytes
    assert _digest(*S.colour_digits(mnist_digits, seed=6)) != _digest(*a)
    images, fg, bg = a
    assert images.shape == (600, 32, 32, 3) and images.dtype == np.uint8
    assert set(np.unique(fg)) == set(range(len(S.FOREGROUND))) and set(np.unique(bg)) == set(range(len(S.BACKGROUND)))
    np.testing.assert_array_equal(images[:, 0, 0], S.BACKGROUND[bg].astype(np.uint8))  # the corner is background
    mf, mb = S.measure_colours(images)
    assert np.mean(mf == fg) >= 0.99 and np.mean(mb == bg) == 1.0
    mf2, _ = S.measure_colours(images.astype(np.float32) / 255.0)  # [0, 1] floats too
    np.testing.assert_array_equal(mf, mf2)


@pytest.mark.parametrize("size", [32, 64])
def test_sprite_labels_match_the_rendered_pixels(size):
    images, f = S.sprites(300, size, seed=3)
    again, f2 = S.sprites(300, size, seed=3)
    assert _digest(images) == _digest(again) and all(np.array_equal(f[k], f2[k]) for k in f)
    assert images.shape == (300, size, size, 1) and images.dtype == np.uint8
    m = S.measure_sprites(images, f["shape"])
    px = size * (1 - 2 * S.MARGIN) / 2  # pixels per unit of x and y
    assert np.max(np.abs(m["x"] - f["x"])) * px < 1.0 and np.max(np.abs(m["y"] - f["y"])) * px < 1.0
    assert np.corrcoef(m["scale"], f["scale"])[0, 1] > 0.98
    assert np.mean(m["bright"] == f["bright"]) > 0.99
    assert images[:, 0].max() == 0 and images[:, :, -1].max() == 0  # sprites stay inside the frame
    # y points up: a sprite at y = +1 has its centroid in the top half
    assert np.all(m["y"][f["y"] > 0.5] > 0) and np.all(np.argmax(images[f["y"] > 0.8, :, :, 0].sum(2), 1) < size / 2)


def test_unit_areas_follow_the_shape_definitions():
    square, ellipse, heart = S.unit_areas()
    assert square == pytest.approx(1.6 ** 2, rel=1e-2) and ellipse == pytest.approx(np.pi * 0.6, rel=1e-2)
    assert 1.5 < heart < 3.5


def test_mutual_information_gap_known_answers():
    rng = np.random.RandomState(0)
    factors = {"a": rng.uniform(-1, 1, 4000), "b": rng.randint(0, 3, 4000)}
    perfect = metrics.mutual_information_gap({"c1": factors["a"], "c2": factors["b"].astype(float)}, factors)
    assert perfect["mig"] > 0.95 and perfect["per_factor"]["a"]["best_code"] == "c1"
    noise = metrics.mutual_information_gap({"c1": rng.uniform(size=4000), "c2": rng.uniform(size=4000)}, factors)
    assert noise["mig"] < 0.05
    entangled = metrics.mutual_information_gap({"c1": factors["a"], "c2": factors["a"] + 1e-9}, {"a": factors["a"]})
    assert entangled["mig"] < 0.05  # two codes carry the factor equally: no gap


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("colour_digits", (32, 32, 3)), ("sprites", (32, 32, 1)),
                                         ("sprites64", (64, 64, 1))])
def test_built_data_configs_train_a_few_steps(name, shape, tmp_path):
    import dataclasses

    import tensorflow as tf

    from test_datasets import config_from_flagfile
    from tf_ssinfogan.rundir import checkpoints
    from tf_ssinfogan.training import trainer

    cfg = config_from_flagfile(name, f"--run_dir={tmp_path / 'run'}", "--synthetic_count=200")
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, labelled_count=20, anneal_every=2,
                                      labelled_per_batch=min(cfg.data.labelled_per_batch, 2)),  # 16 of 64 -> 2 of 8
        train=dataclasses.replace(cfg.train, batch_size=8, steps=4, steps_per_epoch=2, checkpoint_every_epochs=1,
                                  grid_every_epochs=1, export_at_end=False, verbose=0, eval_every_epochs=0))
    result = trainer.train(cfg)
    assert result.step == 4
    _, model = checkpoints.load_run(cfg.run_dir)
    images = model.generate(model.sample_latents(3))
    assert images.shape == (3,) + shape and float(tf.reduce_min(images)) >= cfg.network.data_range[0]
    probs = model.classify(images)
    assert {c.name: tuple(probs[c.name].shape) for c in cfg.latent.codes} == {c.name: (3, c.dim) for c in cfg.latent.codes}
    from tf_ssinfogan.evaluation import factors  # the judge-free evaluation of built data

    scores = factors.built_data_scores(model, cfg.data.source)
    if name == "colour_digits":
        assert set(scores["colour_codes"]) == {"fg", "bg"}
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in scores["colour_codes"].values())
    else:
        sprites = scores["sprite_factors"]
        assert set(sprites["codes"]) == {"x", "y", "scale", "bright"} and 0.0 <= sprites["mig"] <= 1.0
        assert all(np.isfinite(r.get("pearson", r.get("accuracy"))) for r in sprites["codes"].values())


class _StandIn:
    """A 'generator' that draws exactly what its codes say (known answers for the judge-free scores)."""

    def __init__(self, codes, draw):
        from tf_ssinfogan import config as C
        from tf_ssinfogan.model.latents import LatentSpace

        self.latent_config = C.LatentConfig(noise_dim=2, codes=C.parse_codes(codes))
        self.latent_space = LatentSpace(self.latent_config)
        self.network_config = C.NetworkConfig("infogan32", (32, 32, 1), output_activation="sigmoid")
        self.draw = draw

    def generate(self, latents):
        import tensorflow as tf

        v = {k: np.asarray(t) for k, t in latents.items()}
        return tf.constant(self.draw(v), tf.float32)


def test_sprite_scores_of_a_perfect_stand_in():
    from tf_ssinfogan.evaluation import factors

    def draw(v):
        n = len(v["x"])
        truth = {"shape": np.argmax(v["shape"], -1), "x": v["x"][:, 0], "y": v["y"][:, 0],
                 "scale": v["scale"][:, 0], "bright": v["bright"][:, 0].astype(np.int64),
                 "rotation": np.zeros(n, np.float32)}
        return S.render_sprites(truth, 32).astype(np.float32) / 255.0

    model = _StandIn("shape:cat:3:shape,x:cont:1:x,y:cont:1:y,scale:cont:1:scale,bright:bin:1:bright,c1:cont:1", draw)
    out = factors.sprite_scores(model, num=600)
    for name in ("x", "y", "scale"):
        assert out["codes"][name]["pearson"] > 0.97 and out["codes"][name]["spearman"] > 0.97, out["codes"]
    assert out["codes"]["bright"]["accuracy"] > 0.99
    assert out["mig"] > 0.5 and out["mig_per_factor"]["x"]["best_code"] == "x"


def test_colour_scores_of_a_perfect_and_of_a_colour_blind_stand_in(mnist_digits):
    from tf_ssinfogan.evaluation import factors

    def draw(v, blind=False):
        fg, bg = np.argmax(v["fg"], -1), np.argmax(v["bg"], -1)
        if blind:
            fg, bg = np.zeros_like(fg), np.zeros_like(bg)
        a = np.pad(mnist_digits[:len(fg)].astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))[..., None]
        return (S.BACKGROUND[bg][:, None, None] * (1 - a) + S.FOREGROUND[fg][:, None, None] * a) / 255.0

    codes = "digit:cat:10:label,fg:cat:5:fg,bg:cat:3:bg"
    good = factors.colour_digit_scores(_StandIn(codes, draw), per_value=40)
    assert good["fg"]["accuracy"] > 0.98 and good["bg"]["accuracy"] == 1.0 and "digit" not in good
    blind = factors.colour_digit_scores(_StandIn(codes, lambda v: draw(v, True)), per_value=40)
    assert blind["fg"]["accuracy"] == pytest.approx(1 / 5) and blind["bg"]["accuracy"] == pytest.approx(1 / 3)
