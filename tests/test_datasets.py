"""The paper's datasets and the user's own: configs, TFDS label columns, image folders, npz with unlabelled
entries, code/label matching, labelled-subset selection, binary and continuous semi-supervised codes,
instance noise. Everything runs offline: TFDS only under `tfds.testing.mock_data`."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan.data import sources
from tf_ssinfogan import config as C
from tf_ssinfogan.data import stream as D
from tf_ssinfogan.evaluation import judges
from tf_ssinfogan.training import trainer as training
from tf_ssinfogan.model.ssinfogan import SSInfoGAN, instance_noise_stddev
from conftest import mirrored_strategy, tiny_config, tiny_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("svhn", "celeba", "cifar")


def config_from_flagfile(name, *extra):
    """The ExperimentConfig that `train --flagfile=configs/<name>.flags` resolves (flags reset afterwards)."""
    from absl import flags

    from tf_ssinfogan import train as train_cli

    fl = flags.FLAGS
    fl.unparse_flags()
    try:
        fl(["train", f"--flagfile={os.path.join(ROOT, 'configs', name + '.flags')}", *extra])
        return train_cli.config_from_flags()
    finally:
        fl.unparse_flags()


def mock_tfds(num_examples):
    import tensorflow_datasets as tfds

    return tfds.testing.mock_data(num_examples=num_examples)


# ------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", CONFIGS)
def test_config_resolves_and_round_trips(name):
    cfg = config_from_flagfile(name)
    assert cfg.network.image_shape == (32, 32, 3)
    assert cfg.network.output_activation == "tanh" and cfg.network.data_range == (-1.0, 1.0)
    assert cfg.network.architecture in ("infogan32", "dcgan32")
    assert cfg.data.source == "tfds"
    assert C.ExperimentConfig.from_dict(json.loads(cfg.to_json())) == cfg
    kinds = {c.name: (c.kind, c.dim, c.label) for c in cfg.latent.codes}
    if name == "svhn":
        assert kinds["digit"] == ("categorical", 10, "label")
        assert sum(k == "categorical" and l is None for k, _, l in kinds.values()) == 3
        assert sum(k == "continuous" for k, _, _ in kinds.values()) == 4
        assert cfg.latent.noise_dim == 124
    elif name == "celeba":
        ss = {c.label: c.kind for c in cfg.latent.semi_supervised_codes}
        assert ss == dict.fromkeys(["Smiling", "Mouth_Slightly_Open", "Attractive", "Male"], "binary")
        assert all(c.kind == "categorical" for c in cfg.latent.unsupervised_codes)
        assert cfg.data.center_crop == (108, 108) and cfg.data.resize_to == (32, 32)
    else:
        assert kinds["object"] == ("categorical", 10, "label")
        assert all(c.kind == "continuous" for c in cfg.latent.unsupervised_codes)
        assert cfg.objective.instance_noise.enabled and cfg.objective.instance_noise_anneal_steps > 0


def test_mnist_config_has_new_features_off():
    cfg = config_from_flagfile("mnist")
    assert cfg.objective.instance_noise_std == 0.0
    assert cfg.data.center_crop == () and cfg.data.resize_to == () and cfg.data.channels == 0
    assert cfg.network == C.NetworkConfig() and cfg.latent == C.LatentConfig()


def _flat(cfg):
    d = cfg.to_dict()
    return {f"{section}.{k}": v for section, fields in d.items() if isinstance(fields, dict) for k, v in fields.items()}


def test_mnist_classifier_config_is_the_reference_plus_the_recipe():
    ref, recipe = _flat(config_from_flagfile("mnist")), _flat(config_from_flagfile("mnist_classifier"))
    changed = {k: recipe[k] for k in ref if ref[k] != recipe[k]}
    assert changed == {
        "data.labelled_per_batch": 32, "data.labelled_shift": 2, "data.labelled_rotation": 15.0,
        "objective.pseudo_label_weight": 3.0, "objective.pseudo_label_shift": 3.0,
        "objective.pseudo_label_rotation": 15.0, "objective.guide_head": True, "train.final_classifier_eval": True,
        "judge.epochs": 30, "judge.augment": True, "train.max_checkpoints": 10}, changed
    assert recipe["objective.q_ss_fake_weight"] == 0.0 and recipe["train.steps"] == 5000  # the reference schedule
    hundred = _flat(config_from_flagfile("mnist_classifier_100"))
    changed = {k: hundred[k] for k in recipe if recipe[k] != hundred[k]}
    assert changed == {"data.labelled_count": 100, "data.labelled_selection": "balanced", "train.steps": 3000}, changed
    assert config_from_flagfile("mnist_classifier_100").run_dir == "runs/mnist_classifier_100"


@pytest.mark.slow
def test_mnist_classifier_config_trains_and_classifies(tmp_path):
    """configs/mnist_classifier.flags, shrunk to batch 16 with 4 labelled per batch, trains 4 steps; the final
    evaluation reports Q_ss's test accuracy."""
    cfg = config_from_flagfile("mnist_classifier", f"--run_dir={tmp_path / 'run'}")
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, labelled_count=16, labelled_per_batch=4),
        train=dataclasses.replace(cfg.train, batch_size=16, steps=4, steps_per_epoch=2, checkpoint_every_epochs=1,
                                  grid_every_epochs=1, export_at_end=False, verbose=0,
                                  final_classifier_eval=False))
    result = training.train(cfg, source=tiny_source())
    assert result.step == 4 and 0.0 <= result.eval["q_ss_test_accuracy"]["digit"] <= 1.0
    logs = open(os.path.join(cfg.run_dir, "config.json")).read()
    assert '"labelled_per_batch": 4' in logs and '"pseudo_label_rotation": 15.0' in logs


@pytest.mark.slow
@pytest.mark.parametrize("name, tfds_name", [("cifar", "cifar10"), ("svhn", "svhn_cropped"), ("celeba", "celeb_a")])
def test_dry_run_prints_the_resolved_config(name, tfds_name):
    out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.train", f"--flagfile=configs/{name}.flags",
                          "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout)
    assert d["data"]["tfds_name"] == tfds_name
    assert (d["objective"]["instance_noise_std"] > 0) == (name == "cifar")
    assert C.ExperimentConfig.from_dict(d) == config_from_flagfile(name)


class _Capture(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.trained = self.model
        self.logs = dict(logs or {})


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_20_steps_on_mock_tfds(name, tmp_path, inception75, monkeypatch):
    """Each config, shrunk to batch 8, trains 20 steps on mock TFDS data (CelebA with --eval_every_epochs); samples
    and heads have the shapes the config implies; the run evaluates with every metric that applies."""
    cfg = config_from_flagfile(name, f"--run_dir={tmp_path / 'run'}", "--nodownload")
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, labelled_count=10, labelled_selection="random", anneal_every=5,
                                 labelled_per_batch=min(cfg.data.labelled_per_batch, 2)),  # 16 of 64 -> 2 of 8
        train=dataclasses.replace(cfg.train, batch_size=8, steps=20, steps_per_epoch=10,
                                  checkpoint_every_epochs=2, grid_every_epochs=2, export_at_end=False,
                                  verbose=0, eval_every_epochs=2 if name == "celeba" else 0),
        judge=dataclasses.replace(cfg.judge, epochs=1),  # the evaluation during training finds the judges cached below
        objective=dataclasses.replace(
            cfg.objective, instance_noise_anneal_steps=min(cfg.objective.instance_noise_anneal_steps, 40)),
    )
    capture = _Capture()
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))
    with mock_tfds(40):
        source = sources.load_source(cfg.data)
        # quick judges (1 epoch) in the cache, where the evaluation during training finds them
        found = judges.judges_for(cfg.latent.codes, source, C.JudgeConfig(epochs=1))
        category = judges.category_judge(cfg.latent.codes, found, source, C.JudgeConfig(epochs=1))
        result = training.train(cfg, source=source, extra_callbacks=[capture])
    assert result.step == 20
    if name == "celeba":  # binary attributes, no 'label' column: evaluated during training all the same
        history = [json.loads(line) for line in open(os.path.join(cfg.run_dir, "eval_history.jsonl"))]
        assert [h["step"] for h in history] == [20]
        assert {f"Eval/judge_balanced_accuracy/{c}" for c in ("smile", "mouth_open", "attractive", "male")} <= \
            set(history[0])
    model = capture.trained
    assert all(np.isfinite(float(v)) for v in capture.logs.values()), capture.logs
    n = 4
    images = model.generate(model.sample_latents(n))
    assert images.shape == (n, 32, 32, 3)
    assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
    heads = model.discriminator(images, training=False)
    assert heads["logits"].shape == (n,)
    assert {k: tuple(v.shape) for k, v in heads["q"].items()} == {c.name: (n, c.dim) for c in cfg.latent.codes}
    probs = model.classify(images)
    for c in cfg.latent.semi_supervised_codes:
        assert probs[c.name].shape == (n, c.dim)
    if name == "cifar":
        assert float(model.instance_noise_stddev()) == pytest.approx(0.1 * (1 - 20 / 40), rel=1e-6)
    assert os.path.exists(os.path.join(cfg.run_dir, "eval.json"))
    _evaluate_every_metric(name, cfg, model, source, found, category, inception75, tmp_path)


def _evaluate_every_metric(name, cfg, model, source, found, category, extractor, tmp_path):
    """The run's data (mock) through every metric that applies: judges per code, Q on real images, the
    judge-feature distance, information bounds, FID/KID/IS (random InceptionV3 at 75x75), and the report."""
    from tf_ssinfogan.evaluation import report

    ecfg = C.EvalConfig(metrics=C.METRICS, per_class=2, continuous_samples=16, judge_fd_samples=16,
                                num_samples=16, kid_subsets=2, kid_subset_size=8, is_splits=2)
    res = report.evaluate(model, source, ecfg, found, category, extractor, grids_dir=str(tmp_path / "eval"))
    report.write_report(res, str(tmp_path / "eval"), name)
    ss = cfg.latent.semi_supervised_codes
    assert set(res["q_real"]) == {c.name for c in ss}
    for c in ss:
        entry = res["codes"][c.name]
        assert 0.0 <= entry["samples"]["value"] <= 1.0 and "held_out" in entry["judge"], entry
        assert entry["judge"]["held_out"]["metric"] == ("balanced_accuracy" if c.kind == "binary" else "accuracy")
    unsup = [c.name for c in cfg.latent.unsupervised_codes if c.kind == "categorical"]
    if name == "celeba":  # attributes only: no categorical judge to map the unsupervised codes onto
        assert all("unavailable" in res["codes"][u]["judge"] for u in unsup)
    else:
        assert all(0.0 <= res["codes"][u]["samples"]["mapped_accuracy"] <= 1.0 for u in unsup)
    assert np.isfinite(res["judge_frechet_distance"]["value"])
    assert np.isfinite(res["inception"]["fid"]) and res["inception"]["inception_score"]["mean"] >= 1.0 - 1e-6
    assert set(res["information_bounds"]) == {c.name for c in cfg.latent.codes}
    assert "| FID" in open(tmp_path / "eval" / "report.md").read()


# ----------------------------------------------------------------------------------------- TFDS columns
def test_load_tfds_celeba_flattens_attributes_and_crops():
    with mock_tfds(6):
        src = sources.load_tfds("celeb_a", download=False, center_crop=(108, 108), resize_to=(32, 32), channels=3,
                          batch_size=4)  # 2 batches: exercises the batch-by-batch assembly
    assert src.train_images.shape == (6, 32, 32, 3) and src.train_images.dtype == np.uint8
    assert src.test_images.shape == (6, 32, 32, 3)
    for attr in ("Smiling", "Mouth_Slightly_Open", "Attractive", "Male"):
        y = src.train_labels[attr]
        assert y.shape == (6,) and y.dtype == np.int64 and set(np.unique(y)) <= {0, 1}
        assert src.column(attr).kind == "binary"
        np.testing.assert_array_equal(src.train_labels[f"attributes/{attr}"], y)
    cfg = config_from_flagfile("celeba")
    sources.check_source_matches(src, cfg.latent, cfg.network.image_shape)


def test_load_tfds_classlabel_declares_its_classes():
    with mock_tfds(5):
        src = sources.load_tfds("svhn_cropped", download=False)
    assert src.image_shape == (32, 32, 3)
    assert src.column("label") == sources.LabelColumn("categorical", 10, tuple(str(i) for i in range(10)))


def test_preprocess_crop_resize_and_channels():
    x = np.zeros([2, 218, 178, 3], np.uint8)
    x[:, 55:163, 35:143] = 200  # exactly the centred 108x108 box
    y = sources.preprocess_images(x, (108, 108), (32, 32)).numpy()
    assert y.shape == (2, 32, 32, 3) and (y == 200).all()
    g = sources.preprocess_images(y, channels=1).numpy()
    assert g.shape == (2, 32, 32, 1) and (g == 200).all()
    with pytest.raises(sources.DataError, match="larger than the images"):
        sources.preprocess_images(x, (300, 300))


# ------------------------------------------------------------------------------------ code / label match
def _attr_source():
    src = tiny_source(n_train=40, shape=(28, 28, 1))
    rng = np.random.RandomState(0)
    attr = rng.randint(0, 2, size=40).astype(np.int64)
    attr[:5] = -1
    value = rng.uniform(-1, 1, size=40).astype(np.float32)
    value[5:8] = np.nan
    src.train_labels.update(attr=attr, value=value, smile=attr.clip(0, 1).astype(bool))
    src.test_labels.update(attr=np.abs(attr[:20]), value=np.nan_to_num(value[:20]), smile=np.zeros(20, bool))
    return src


@pytest.mark.parametrize("codes, pattern", [
    ("d:cat:10:smile", r"code 'd' \(categorical, dim 10\) cannot be tied to label 'smile' of 'tiny': it is a binary"),
    ("b:bin:1:label", r"code 'b' \(binary, dim 1\) cannot be tied to label 'label' of 'tiny': it is a categorical"),
    ("b:bin:1:nothere", r"code 'b' is tied to label 'nothere', but 'tiny' has labels \['attr', 'label', 'smile', "
                        r"'value'\]"),
    ("v:cont:1:label", r"code 'v' \(continuous, dim 1\) cannot be tied to label 'label'.*float column"),
    ("d:cat:10:value", r"code 'd' .* cannot be tied to label 'value'.*continuous values"),
    ("d:cat:8:label", r"code 'd' has 8 categories, but label 'label' of 'tiny' has values up to 9"),
    ("b:bin:2:attr", r"code 'b' \(binary, dim 2\) needs 2 value\(s\) per image but label 'attr'.* has 1"),
])
def test_mismatched_code_and_label_are_rejected_naming_both(codes, pattern):
    latent = C.LatentConfig(noise_dim=4, codes=C.parse_codes(codes))
    with pytest.raises(C.ConfigError, match=pattern):
        sources.check_source_matches(_attr_source(), latent, (28, 28, 1))


def test_declared_class_count_must_equal_code_dim():
    src = tiny_source()
    src.label_columns["label"] = sources.LabelColumn("categorical", 12)
    latent = C.LatentConfig(noise_dim=4, codes=C.parse_codes("d:cat:10:label"))
    with pytest.raises(C.ConfigError, match="code 'd' .* has 10 categories but label 'label' of 'tiny' has 12"):
        sources.check_source_matches(src, latent, (28, 28, 1))


def test_matching_codes_of_every_kind_are_accepted():
    latent = C.LatentConfig(noise_dim=4, codes=C.parse_codes("d:cat:10:label,b:bin:1:attr,v:cont:1:value,"
                                                             "two:cat:2:attr,s:bin:1:smile,s2:cat:2:smile"))
    sources.check_source_matches(_attr_source(), latent, (28, 28, 1))


@pytest.mark.slow
def test_binary_and_continuous_semi_supervised_codes_train(tmp_path):
    src = _attr_source()
    cfg = tiny_config(tmp_path, export_at_end=False)
    cfg = dataclasses.replace(
        cfg, latent=C.LatentConfig(noise_dim=8, codes=C.parse_codes("d:cat:10:label,b:bin:1:attr,v:cont:1:value,"
                                                                    "c1:cont:1")),
        data=dataclasses.replace(cfg.data, labelled_count=12))
    stream = D.TrainStream(src, cfg.latent, cfg.data, 8, cfg.network.data_range)
    assert stream.num_labelled == 12 and (stream.labelled_idx >= 8).all()  # rows 0-7 miss a label
    assert stream.labelled_targets["attr"].shape == (12, 1) and stream.labelled_targets["value"].dtype == np.float32
    images, labels, mask = next(iter(stream.dataset(0, 1)))  # p(0) = 1: a labelled batch
    assert float(tf.reduce_min(mask)) == 1.0 and labels["attr"].shape == (8, 1)
    capture = _Capture()
    result = training.train(cfg, source=src, extra_callbacks=[capture])
    assert result.step == cfg.train.steps
    logs = capture.logs
    assert np.isfinite(logs["q_ss_real"]) and logs["q_ss_real"] > 0 and np.isfinite(logs["li_ss"])
    assert set(result.eval["q_ss_test_accuracy"]) == {"d", "b"}


# ------------------------------------------------------------------------------------ labelled selection
def _cfg(**kw):
    return dataclasses.replace(C.DataConfig(), **kw)


def test_select_labelled_fraction_count_random_balanced_seeded():
    labels = np.repeat(np.arange(4), 25)  # 100 examples, 4 classes
    frac = D.select_labelled(labels, _cfg(labelled_fraction=0.2))
    assert len(frac) == 20 and len(np.unique(frac)) == 20
    count = D.select_labelled(labels, _cfg(labelled_count=7, labelled_fraction=0.5))
    assert len(count) == 7  # the count wins over the fraction
    bal = D.select_labelled(labels, _cfg(labelled_count=10, labelled_selection="balanced"), num_classes=4)
    assert np.bincount(labels[bal], minlength=4).tolist() == [3, 3, 2, 2]
    again = D.select_labelled(labels, _cfg(labelled_count=10, labelled_selection="balanced"), num_classes=4)
    np.testing.assert_array_equal(bal, again)
    other = D.select_labelled(labels, _cfg(labelled_fraction=0.2, label_seed=99))
    assert not np.array_equal(frac, other)
    assert (np.diff(frac) > 0).all()


def test_select_labelled_skips_unlabelled_and_fraction_one_takes_all():
    labels = np.array([-1, 0, 1, -1, 2, 0, -1, 1])
    everything = D.select_labelled(labels, _cfg(labelled_fraction=1.0))
    np.testing.assert_array_equal(everything, [1, 2, 4, 5, 7])
    some = D.select_labelled(labels, _cfg(labelled_count=3))
    assert set(some) <= {1, 2, 4, 5, 7} and len(some) == 3
    with pytest.raises(C.ConfigError, match="asked for 6 labelled examples but only 5 have labels"):
        D.select_labelled(labels, _cfg(labelled_count=6))


# ------------------------------------------------------------------------------------------------- npz
def test_npz_with_unlabelled_entries_and_extra_columns(tmp_path):
    src = tiny_source(n_train=30)
    y = src.train_labels["label"].copy()
    y[::3] = -1
    path = str(tmp_path / "own.npz")
    np.savez(path, x_train=src.train_images, y_train=y, x_test=src.test_images, y_test=src.test_labels["label"],
             y_train_smile=(np.arange(30) % 2).astype(bool), y_test_smile=np.zeros(20, bool),
             y_train_size=np.linspace(-1, 1, 30).astype(np.float32), y_test_size=np.zeros(20, np.float32))
    loaded = sources.load_npz(path)
    np.testing.assert_array_equal(loaded.train_labels["label"], y)
    assert loaded.column("smile").kind == "binary" and loaded.column("size").kind == "continuous"
    cfg = _cfg(labelled_fraction=1.0)
    latent = C.LatentConfig(noise_dim=4, codes=C.parse_codes("d:cat:10:label,s:bin:1:smile,z:cont:1:size"))
    sources.check_source_matches(loaded, latent, (28, 28, 1))
    stream = D.TrainStream(loaded, latent, cfg, 8, (0.0, 1.0))
    assert stream.num_labelled == 20


def test_npz_label_out_of_range_names_file_and_value(tmp_path):
    src = tiny_source(n_train=30)
    y = src.train_labels["label"].copy()
    y[4] = -5
    path = str(tmp_path / "bad.npz")
    np.savez(path, x_train=src.train_images, y_train=y, x_test=src.test_images, y_test=src.test_labels["label"])
    with pytest.raises(sources.DataError, match=r"bad\.npz:y_train: label -5 at index 4 is out of range"):
        sources.load_npz(path)


# ------------------------------------------------------------------------------------------ image folders
def _write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(image))


@pytest.fixture(scope="module")
def mnist_digits():
    src = sources.load_npz("")
    return src.train_images[:60], src.train_labels["label"][:60]


def _build_folder(root, digits, n_labelled=20, n_unlabelled=24, n_test=10):
    x, y = digits
    for i in range(n_labelled):
        _write_png(os.path.join(root, "labelled", str(y[i]), f"{i:03d}.png"), x[i])
    for i in range(n_labelled, n_labelled + n_unlabelled):
        _write_png(os.path.join(root, "unlabelled", f"{i:03d}.png"), x[i])
    for i in range(n_labelled + n_unlabelled, n_labelled + n_unlabelled + n_test):
        _write_png(os.path.join(root, "test", str(y[i]), f"{i:03d}.png"), x[i])
    return root


def test_image_folder_loads_partly_labelled_digits(tmp_path, mnist_digits):
    root = _build_folder(str(tmp_path / "digits"), mnist_digits)
    src = sources.load_image_folder(root, channels=1)
    x, y = mnist_digits
    assert src.train_images.shape == (44, 28, 28, 1) and src.test_images.shape == (10, 28, 28, 1)
    labelled = src.train_labels["label"] >= 0
    assert labelled.sum() == 20 and (src.train_labels["label"][~labelled] == -1).all()
    # keras lists labelled/<class>/ in class order, files sorted: compare as (label, image) multisets
    order = np.lexsort((np.arange(20), y[:20]))
    np.testing.assert_array_equal(src.train_images[:20], x[:20][order])
    np.testing.assert_array_equal(src.train_labels["label"][:20], y[:20][order])
    np.testing.assert_array_equal(src.train_images[20:], x[20:44])
    assert sorted(src.test_labels["label"].tolist()) == sorted(y[44:54].tolist())
    assert src.column("label").kind == "categorical"


@pytest.mark.slow
def test_image_folder_run_trains(tmp_path, mnist_digits):
    root = _build_folder(str(tmp_path / "digits"), mnist_digits)
    cfg = tiny_config(tmp_path, export_at_end=False)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="image_folder", image_dir=root,
                                                            channels=1, labelled_fraction=1.0))
    capture = _Capture()
    result = training.train(cfg, extra_callbacks=[capture])
    assert result.step == cfg.train.steps
    assert capture.trained.generate(capture.trained.sample_latents(2)).shape == (2, 28, 28, 1)


def test_image_folder_errors_name_the_file_or_folder(tmp_path, mnist_digits):
    x, _ = mnist_digits
    empty = tmp_path / "empty"
    (empty / "unlabelled").mkdir(parents=True)
    with pytest.raises(sources.DataError, match=r"unlabelled' holds no images"):
        sources.load_image_folder(str(empty), channels=1)
    with pytest.raises(sources.DataError, match="needs a labelled/<class>/ or an unlabelled/ sub-folder"):
        sources.load_image_folder(str(tmp_path), channels=1)

    mixed = tmp_path / "mixed"
    _write_png(str(mixed / "unlabelled" / "a.png"), x[0])
    _write_png(str(mixed / "unlabelled" / "b.png"), np.zeros([30, 28, 1], np.uint8))
    with pytest.raises(sources.DataError, match=r"b\.png' is 30x28 but .*a\.png' is 28x28"):
        sources.load_image_folder(str(mixed), channels=1)
    resized = sources.load_image_folder(str(mixed), resize_to=(28, 28), channels=1)  # resizing accepts mixed sizes
    assert resized.train_images.shape == (2, 28, 28, 1)

    corrupt = tmp_path / "corrupt"
    _write_png(str(corrupt / "labelled" / "3" / "ok.png"), x[0])
    (corrupt / "labelled" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(sources.DataError, match=r"broken\.png' is corrupt or not an image"):
        sources.load_image_folder(str(corrupt), channels=1)

    empty_class = tmp_path / "empty_class"
    _write_png(str(empty_class / "labelled" / "1" / "a.png"), x[0])
    (empty_class / "labelled" / "2").mkdir()
    with pytest.raises(sources.DataError, match=r"class folder .*labelled/2' holds no images"):
        sources.load_image_folder(str(empty_class), channels=1)


def test_image_folder_label_out_of_range_is_rejected(tmp_path, mnist_digits):
    x, _ = mnist_digits
    root = tmp_path / "twelve"
    _write_png(str(root / "labelled" / "0" / "a.png"), x[0])
    _write_png(str(root / "labelled" / "12" / "b.png"), x[1])
    src = sources.load_image_folder(str(root), channels=1)
    assert sorted(src.train_labels["label"].tolist()) == [0, 12]
    latent = C.LatentConfig(noise_dim=4, codes=C.parse_codes("digit:cat:10:label"))
    with pytest.raises(C.ConfigError, match="code 'digit' has 10 categories, but label 'label' of 'twelve' "
                                            "has values up to 12"):
        sources.check_source_matches(src, latent, (28, 28, 1))
    named = tmp_path / "named"
    for i, cls in enumerate(["cat", "dog", "emu"]):
        _write_png(str(named / "labelled" / cls / "a.png"), x[i])
    src = sources.load_image_folder(str(named), channels=1)
    assert src.train_labels["label"].tolist() == [0, 1, 2] and src.column("label").num_classes == 3
    with pytest.raises(C.ConfigError, match="code 'digit' .* has 10 categories but label 'label' of 'named' "
                                            "has 3 classes"):
        sources.check_source_matches(src, latent, (28, 28, 1))


# ------------------------------------------------------------------------------------------ instance noise
def test_instance_noise_schedule_values():
    lin = C.InstanceNoiseConfig(std=0.4, schedule="linear", anneal_steps=100)
    for t, want in [(0, 0.4), (25, 0.3), (50, 0.2), (100, 0.0), (150, 0.0)]:
        assert float(instance_noise_stddev(t, lin)) == pytest.approx(want, abs=1e-7)
    const = C.InstanceNoiseConfig(std=0.4, anneal_steps=0)
    assert float(instance_noise_stddev(1000, const)) == pytest.approx(0.4)
    exp = C.InstanceNoiseConfig(std=0.5, schedule="exponential", decay=0.99)
    for t in (0, 1, 10, 500):
        assert float(instance_noise_stddev(t, exp)) == pytest.approx(0.5 * 0.99 ** t, rel=1e-5)
    assert float(instance_noise_stddev(tf.constant(25, tf.int64), lin)) == pytest.approx(0.3)
    with pytest.raises(C.ConfigError, match="instance_noise_decay"):
        C.InstanceNoiseConfig(std=0.1, schedule="exponential", decay=1.5).validate()


class _Spy:
    """Wraps a network and records what it is called with and what it returns (eager only)."""

    def __init__(self, net):
        self.net, self.inputs, self.outputs = net, [], []

    def __call__(self, x, training=False, **kwargs):
        out = self.net(x, training=training, **kwargs)
        self.inputs.append(np.asarray(x))
        self.outputs.append(out)
        return out

    def __getattr__(self, name):
        return getattr(self.net, name)


def _noisy(noise):
    """The objective with this instance-noise schedule (None: off), G's phase on fresh fakes."""
    noise = noise or C.InstanceNoiseConfig()
    return C.ObjectiveConfig(instance_noise_std=noise.std, instance_noise_schedule=noise.schedule,
                             instance_noise_anneal_steps=noise.anneal_steps, instance_noise_decay=noise.decay,
                             reuse_fakes=False)


def _spied_model(noise):
    model = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 16, _noisy(noise))
    model.compile()
    g, d = _Spy(model.generator), _Spy(model.discriminator)
    object.__setattr__(model, "generator", g)  # bypass Keras tracking: a plain wrapper
    object.__setattr__(model, "discriminator", d)
    return model, g, d


@pytest.mark.parametrize("step", [0, 300])
def test_instance_noise_reaching_d_has_the_scheduled_std(step):
    noise = C.InstanceNoiseConfig(std=0.5, schedule="linear", anneal_steps=1000)
    model, g, d = _spied_model(noise)
    model.g_optimizer.iterations.assign(step)
    want = 0.5 * (1 - step / 1000)
    images = tf.zeros([16, 28, 28, 1])
    labels = {"label": tf.zeros([16], tf.int64)}
    model.train_step((images, labels, tf.ones([16])))
    # D/Q phase: D(real + n), D(fake + n); G phase: D(fake' + n)
    assert len(d.inputs) == 3 and len(g.outputs) == 2
    diffs = [d.inputs[0] - images.numpy(), d.inputs[1] - np.asarray(g.outputs[0]),
             d.inputs[2] - np.asarray(g.outputs[1])]
    for diff in diffs:
        assert abs(diff.mean()) < 0.05 * want
        assert diff.std() == pytest.approx(want, rel=0.05)
    assert not np.allclose(diffs[0], diffs[1])  # independent draws


def test_instance_noise_off_leaves_d_inputs_untouched():
    model, g, d = _spied_model(None)
    images = tf.random.uniform([16, 28, 28, 1])
    model.train_step((images, {"label": tf.zeros([16], tf.int64)}, tf.ones([16])))
    np.testing.assert_array_equal(d.inputs[0], images.numpy())
    np.testing.assert_array_equal(d.inputs[1], np.asarray(g.outputs[0]))


def test_labelled_subset_smaller_than_the_batch():
    src = tiny_source(n_train=64)
    cfg = dataclasses.replace(C.DataConfig(), labelled_count=3)
    stream = D.TrainStream(src, C.LatentConfig(), cfg, 8, (0.0, 1.0))
    images, labels, mask = next(iter(stream.dataset(0, 1)))  # step 0 draws a labelled batch
    assert float(tf.reduce_min(mask)) == 1.0
    lab = set(src.train_labels["label"][stream.labelled_idx].tolist())
    got = labels["label"].numpy().tolist()
    assert set(got) <= lab and all(got.count(v) >= 2 for v in lab)  # 8 draws cycle the 3 labelled images


@pytest.mark.parametrize("reported", [7, 5])  # the real split size, or a wrong one (falls back to batches)
def test_load_tfds_fills_a_preallocated_array_when_the_split_size_is_known(monkeypatch, reported):
    import tensorflow_datasets as tfds

    real_load = tfds.load

    class _Info:
        def __init__(self, info):
            self.features = info.features
            self.splits = {"train": type("S", (), {"num_examples": reported})(),
                           "test": type("S", (), {"num_examples": reported})()}

    def load(*args, **kwargs):
        ds, info = real_load(*args, **kwargs)
        return ds, _Info(info)

    with mock_tfds(7):
        expected = sources.load_tfds("cifar10", download=False, batch_size=3)
        monkeypatch.setattr(tfds, "load", load)
        got = sources.load_tfds("cifar10", download=False, batch_size=3)
    np.testing.assert_array_equal(got.train_images, expected.train_images)
    np.testing.assert_array_equal(got.train_labels["label"], expected.train_labels["label"])
    assert got.train_images.shape == (7, 32, 32, 3)


@pytest.mark.slow
def test_instance_noise_under_mirrored_strategy():
    strategy = mirrored_strategy()
    noise = C.InstanceNoiseConfig(std=0.3, schedule="exponential", decay=0.9)
    with strategy.scope():
        m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 8, _noisy(noise))
        m.compile()
    stream = D.TrainStream(tiny_source(), C.LatentConfig(), C.DataConfig(labelled_fraction=0.25), 8, (0.0, 1.0))
    history = m.fit(stream.distributed_dataset(strategy, 0, 2), epochs=1, steps_per_epoch=2, verbose=0)
    assert m.current_step() == 2 and all(np.isfinite(v[-1]) for v in history.history.values())
    assert float(instance_noise_stddev(m.current_step(), noise)) == pytest.approx(0.3 * 0.81)
    # the replicas' noise are the two halves of one draw for the global batch (as one replica would draw it)
    state = m.seed_generator.state.numpy()
    per_replica = strategy.run(lambda: m.add_instance_noise(tf.zeros([2, 28, 28, 1])))
    a, b = strategy.experimental_local_results(per_replica)
    assert not np.allclose(a.numpy(), b.numpy())
    with tf.device(strategy.extended.worker_devices[0]):
        single = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 8, _noisy(noise))
        single.compile()
        single.g_optimizer.iterations.assign(2)
        single.seed_generator.state.assign(state)
        whole = single.add_instance_noise(tf.zeros([4, 28, 28, 1])).numpy()
    np.testing.assert_allclose(np.concatenate([a.numpy(), b.numpy()]), whole, atol=1e-6)


@pytest.mark.slow
def test_celeba64_trains_a_few_steps_on_mock_tfds(tmp_path):
    """configs/celeba64.flags: CelebA at 64x64 with the DCGAN-64 networks, on mock data."""
    cfg = config_from_flagfile("celeba64", f"--run_dir={tmp_path / 'run'}", "--nodownload")
    assert cfg.network.architecture == "dcgan64" and cfg.network.image_shape == (64, 64, 3)
    assert cfg.data.resize_to == (64, 64) and cfg.data.center_crop == (108, 108)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, labelled_count=8, anneal_every=2,
                                      labelled_per_batch=min(cfg.data.labelled_per_batch, 2)),
        train=dataclasses.replace(cfg.train, batch_size=8, steps=2, steps_per_epoch=1, export_at_end=False, verbose=0))
    capture = _Capture()
    with mock_tfds(16):
        result = training.train(cfg, extra_callbacks=[capture])
    assert result.step == 2
    images = capture.trained.generate(capture.trained.sample_latents(2))
    assert images.shape == (2, 64, 64, 3)
    assert set(result.eval["q_ss_test_accuracy"]) == {"smile", "mouth_open", "attractive", "male"}
