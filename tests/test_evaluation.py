"""The evaluation (evaluation/) on cases with known answers: every code kind on stand-in generators and judges,
per-column judges and their cache, the report, evaluation on npz files with -1 labels and on image folders, the
CLI's refusal without InceptionV3 weights; the end-of-run evaluation (eval.json) and the independent classifier."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan import config as C
from tf_ssinfogan.evaluation import judges, metrics, report
from tf_ssinfogan.data.sources import ArraySource, load_npz
from tf_ssinfogan.model.latents import LatentSpace
from tf_ssinfogan.model.ssinfogan import SSInfoGAN
from conftest import tiny_config, tiny_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _BrightnessGenerator:
    """A generator whose mean brightness is `fn(code)` for one binary or continuous code 'c'; Q reads it back."""

    def __init__(self, kind, fn):
        self.latent_config = C.LatentConfig(noise_dim=3, codes=(C.CodeSpec("c", kind, 1, "y"),))
        self.latent_space = LatentSpace(self.latent_config)
        self.network_config = C.NetworkConfig()
        self.ss_codes = self.latent_config.semi_supervised_codes
        self.fn = fn

    def current_step(self):
        return 7

    def generate(self, latents):
        b = self.fn(tf.cast(latents["c"][:, 0], tf.float32))
        return tf.ones([tf.shape(b)[0], 28, 28, 1]) * b[:, None, None, None]

    def classify(self, images):  # Q: the brightness, as the probability of the bit or the value of the code
        m = tf.reduce_mean(images, [1, 2, 3])
        return {"c": m[:, None] if self.latent_config.codes[0].kind == "binary" else ((m - 0.5) / 0.4)[:, None]}


def _reader(scale, offset):
    """A judge reading mean brightness: logit / value = scale * (mean - offset)."""
    inputs = keras.Input((28, 28, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    features = keras.layers.Dense(2, name="features")(mean)
    out = keras.layers.Lambda(lambda m: scale * (m - offset), name="logits")(mean)
    return judges.Judge(keras.Model(inputs, [out, features][0]), {"label": "y", "held_out": {"metric": "x"}}, "mem")


@pytest.mark.parametrize("fn, want", [
    (lambda c: 0.25 + 0.5 * c, 1.0),  # bit 1 = bright: the judge always agrees
    (lambda c: 0.75 - 0.5 * c, 0.0),  # inverted
    (lambda c: 0.5 + 0.0 * c + 0.01, 0.5),  # G ignores the bit: each pair of samples reads the same
])
def test_binary_code_balanced_accuracy_on_a_stand_in(fn, want):
    g = _BrightnessGenerator("binary", fn)
    cfg = C.EvalConfig(metrics=("codes",), per_class=16)
    res = report.code_metrics(g, {"c": _reader(1000.0, 0.5)}, cfg)
    assert res["c"]["samples"]["value"] == pytest.approx(want) and res["c"]["samples"]["samples"] == 32


@pytest.mark.parametrize("fn, pearson, spearman", [
    (lambda c: 0.5 + 0.4 * c, 1.0, 1.0),
    (lambda c: 0.5 - 0.4 * c, -1.0, -1.0),
    (lambda c: 0.5 + 0.4 * c ** 3, None, 1.0),  # monotone but not linear: rank correlation 1, Pearson < 1
])
def test_continuous_code_correlations_on_a_stand_in(fn, pearson, spearman):
    g = _BrightnessGenerator("continuous", fn)
    res = report.code_metrics(g, {"c": _reader(2.5, 0.5)}, C.EvalConfig(continuous_samples=200))
    s = res["c"]["samples"]
    assert s["spearman_mean"] == pytest.approx(spearman, abs=1e-6)
    if pearson is None:
        assert 0.85 < s["value"] < 0.95  # corr(c, c^3) for c ~ U(-1, 1) is sqrt(21) / 5 = 0.917
    else:
        assert s["value"] == pytest.approx(pearson, abs=1e-5)


def _brightness_source(kind, n=40):
    """Images whose brightness encodes label column 'y' (a bit, or a value in [-1, 1]); some labels unknown."""
    rng = np.random.RandomState(0)
    if kind == "binary":
        y = rng.randint(0, 2, n).astype(np.int64)
        level, unknown = 0.25 + 0.5 * y, np.int64(-1)
    else:
        y = rng.uniform(-1, 1, n).astype(np.float32)
        level, unknown = 0.5 + 0.4 * y, np.float32(np.nan)
    x = np.round(np.ones([n, 28, 28, 1]) * level[:, None, None, None] * 255).astype(np.uint8)
    y_test = y.copy()
    y_test[:5] = unknown  # unknown labels are left out of every figure
    return ArraySource("bright", x, {"y": y}, x, {"y": y_test})


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_q_on_real_images_with_known_answers(kind):
    g = _BrightnessGenerator(kind, lambda c: c)
    res = report.q_on_real(g, _brightness_source(kind))
    assert res["c"]["examples"] == 35
    assert res["c"]["metric"] == ("accuracy" if kind == "binary" else "r2")
    assert res["c"]["value"] == pytest.approx(1.0, abs=1e-4)


def test_judges_per_column_are_trained_cached_and_report_their_own_figure(tmp_path, monkeypatch):
    """A binary and a continuous judge on images whose brightness carries the label (the small residual CNN
    for 32x32 colour images); the held-out figure is measured on the train split; the second call loads."""
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path))
    rng = np.random.RandomState(0)
    n = 160
    bit, value = rng.randint(0, 2, n), rng.uniform(-1, 1, n).astype(np.float32)
    x = np.clip(128 + 90 * value[:, None, None, None] + rng.normal(0, 8, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    x[:, :16, :16, 0] = np.where(bit, 250, 5)[:, None, None]  # the bit: a red corner
    labels = {"bit": bit.astype(np.int64), "value": value}
    src = ArraySource("synthetic", x, labels, x[::-1].copy(), {k: v[::-1].copy() for k, v in labels.items()})
    codes = C.parse_codes("b:bin:1:bit,v:cont:1:value,v2:cont:1:value,u:cat:3")
    cfg = C.JudgeConfig(epochs=6, batch_size=32)
    found = judges.judges_for(codes, src, cfg)
    assert set(found) == {"b", "v", "v2"} and found["v"] is found["v2"]  # one judge per column and kind
    b, v = found["b"], found["v"]
    assert b.meta["architecture"] == "resnet" and b.meta["trained_on"] == "test split"
    assert b.held_out["metric"] == "balanced_accuracy" and b.held_out["value"] > 0.9, b.held_out
    assert v.held_out["metric"] == "r2" and v.held_out["value"] > 0.5, v.held_out
    assert os.path.basename(b.path).startswith("synthetic_bit_binary1_resnet_") and b.path.startswith(str(tmp_path))
    again = judges.get_judge(src, codes[0], cfg)
    assert again.meta == b.meta
    np.testing.assert_allclose(again.model.predict(x[:8] / 255.0, verbose=0), b.model.predict(x[:8] / 255.0, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert judges.category_judge(codes, found, src, cfg) is None  # no categorical column to map 'u' onto


def test_a_column_without_known_test_labels_is_reported_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path))
    src = tiny_source()
    src.test_labels["label"][:] = -1
    found = judges.judges_for(C.LatentConfig().codes, src, C.JudgeConfig(epochs=1))
    assert isinstance(found["digit"], judges.JudgeUnavailable) and "0 known value(s) in the test split" in \
        str(found["digit"])
    model = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 8)
    model.compile()
    res = report.evaluate(model, src, C.EvalConfig(per_class=2, judge_fd_samples=10), found)
    assert "0 known value(s)" in res["codes"]["digit"]["judge"]["unavailable"]
    assert "unavailable" in res["q_real"]["digit"] and "unavailable" in res["judge_frechet_distance"]
    assert "no judge" in report.markdown_report(res)


@pytest.fixture(scope="module")
def npz_with_unknown_labels(tmp_path_factory):
    src = tiny_source(n_train=48, n_test=30)
    y_train, y_test = src.train_labels["label"].copy(), src.test_labels["label"].copy()
    y_train[::2], y_test[::3] = -1, -1
    path = tmp_path_factory.mktemp("npz") / "partly.npz"
    np.savez(path, x_train=src.train_images[..., 0], y_train=y_train, x_test=src.test_images[..., 0], y_test=y_test)
    return str(path)


def _sources(kind, npz_path, tmp_path):
    if kind == "npz":
        return load_npz(npz_path)
    from test_datasets import _build_folder  # MNIST digits as labelled/unlabelled/test class folders

    full = load_npz("")
    root = _build_folder(str(tmp_path / "digits"), (full.train_images[:40], full.train_labels["label"][:40]),
                         n_labelled=20, n_unlabelled=10, n_test=10)
    from tf_ssinfogan.data.sources import load_image_folder

    return load_image_folder(root, channels=1)


@pytest.mark.parametrize("kind", ["npz", "image_folder"])
def test_every_metric_on_npz_with_unknown_labels_and_image_folders(kind, npz_with_unknown_labels, tmp_path,
                                                                           monkeypatch, inception75):
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))
    src = _sources(kind, npz_with_unknown_labels, tmp_path)
    latent = C.LatentConfig(noise_dim=8, codes=C.parse_codes("digit:cat:10:label,u:cat:4,c1:cont:1"))
    model = SSInfoGAN(latent, C.NetworkConfig(), 8)
    model.compile()
    found = judges.judges_for(latent.codes, src, C.JudgeConfig(epochs=1))
    cfg = C.EvalConfig(metrics=C.METRICS, per_class=3, continuous_samples=10, judge_fd_samples=12,
                               num_samples=12, kid_subsets=3, kid_subset_size=6, is_splits=2)
    res = report.evaluate(model, src, cfg, found, judges.category_judge(latent.codes, found, src), inception75,
                             grids_dir=str(tmp_path / "eval"))
    known = int((src.test_labels["label"] >= 0).sum())
    assert res["q_real"]["digit"]["examples"] == known < len(src.test_images) or kind == "image_folder"
    batch = res["q_real_batch_statistics"]["digit"]  # Q with each test batch's own BN statistics
    assert batch["examples"] == res["q_real"]["digit"]["examples"] and 0.0 <= batch["value"] <= 1.0
    assert report.scalars(res)["Eval/q_ss_test_accuracy_batch_statistics/digit"] == batch["value"]
    assert found["digit"].meta["trained_examples"] == known
    assert res["codes"]["digit"]["samples"]["samples"] == 30 and res["codes"]["u"]["samples"]["samples"] == 12
    assert res["codes"]["u"]["judge"]["label"] == "label" and "c1" not in res["codes"]
    assert np.isfinite(res["judge_frechet_distance"]["value"])
    inc = res["inception"]
    assert inc["fid"] >= -1e-9 and np.isfinite(inc["kid"]["mean"]) and inc["inception_score"]["mean"] >= 1.0 - 1e-6
    assert inc["real_samples"] == min(12, len(src.test_images)) and inc["fake_samples"] == 12
    json_path, md_path = report.write_report(res, str(tmp_path / "eval"), "t")
    assert json.load(open(json_path))["codes"]["digit"]["kind"] == "categorical"
    # eval.json of the end of training: the same format (the same keys for the same figures), the same writer
    os.makedirs(tmp_path / "run")
    final = report.final_evaluation(model, src, str(tmp_path / "run"), found["digit"].model, found["digit"].meta)
    written = json.load(open(tmp_path / "run" / "eval.json"))
    assert written["metrics"] == ["final"] and written["q_real"] == json.load(open(json_path))["q_real"]
    assert final["q_ss_test_accuracy"] == res["q_ss_test_accuracy"]
    assert set(written["class_conditioned"]["digit"]) == set(res["class_conditioned"]["digit"])
    assert written["classifier"] == res["classifier"]
    md = open(tmp_path / "eval" / "report.md").read()
    for text in ("| FID (InceptionV3 pool", "KID x 1000", "Inception Score", "Hungarian-mapped accuracy (unsupervised",
                 "`label` judge (mnist_cnn, 1 epoch): accuracy", "Q accuracy on real test images", "![grid_digit_000000.png]"):
        assert text in md, text
    assert set(report.scalars(res)) >= {"Eval/fid", "Eval/kid", "Eval/inception_score",
                                           "Eval/judge_frechet_distance", "Eval/classifier_accuracy/digit"}


def test_eval_config_and_cli_refuse_bad_input_without_writing(tmp_path):
    with pytest.raises(C.ConfigError, match="metrics \\['fid', 'nope'\\]: each must be one of"):
        C.EvalConfig(metrics=("fid", "nope")).validate()
    cfg = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(cfg.to_json())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_HOME": str(tmp_path / "no_keras_home"),
           "HOME": str(tmp_path / "home"), "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.evaluate", f"--run_dir={run_dir}",
                          "--metrics=fid,kid,is", "--num_samples=100"], cwd=REPO, capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "InceptionV3 ImageNet weights are needed" in out.stderr and "--inception_weights=PATH" in out.stderr
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels.h5" in out.stderr  # IS: the file with the head
    assert "Traceback" not in out.stderr and sorted(os.listdir(run_dir)) == ["config.json"]  # nothing written


@pytest.mark.slow
def test_train_classifier_cli_trains_a_judge_per_column_kind(tmp_path):
    """A binary judge for an npz attribute column, by the CLI; its held-out figure printed and stored."""
    src = tiny_source(n_train=40, n_test=40)
    attr = (np.arange(40) % 2).astype(np.int64)
    attr[:4] = -1
    path = tmp_path / "attrs.npz"
    np.savez(path, x_train=src.train_images[..., 0], y_train=src.train_labels["label"], y_train_smile=attr,
             x_test=src.test_images[..., 0], y_test=src.test_labels["label"], y_test_smile=attr)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_SSINFOGAN_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.train_classifier", f"--npz_path={path}",
                          "--label=smile", "--kind=binary", "--epochs=1"], cwd=REPO, capture_output=True, text=True,
                         timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "judge for 'smile' (binary, mnist_cnn)" in out.stdout and "balanced_accuracy on the train split" in out.stdout
    (meta,) = [f for f in os.listdir(tmp_path / "cache" / "classifiers") if f.endswith(".json")]
    meta = json.load(open(tmp_path / "cache" / "classifiers" / meta))
    assert meta["kind"] == "binary" and meta["trained_examples"] == 36 and meta["held_out_examples"] == 36


def test_a_judge_cached_by_an_older_version_reports_its_architecture_and_held_out_set(tmp_path):
    src = tiny_source()
    code = C.CodeSpec("digit", "categorical", 10, "label")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path / "old.keras")
    judges.save_judge(model, path, {"validation_accuracy_on_train_split": 0.972, "epochs": 5,
                                             "trained_on": "test split", "label": "label"})
    judge = judges.get_judge(src, code, C.JudgeConfig(), path)
    text = report._judge_text(judge.meta)
    assert judge.meta["held_out"] == {"metric": "accuracy", "value": 0.972}
    assert "None" not in text and text.endswith("accuracy 97.20% on 64 held-out train images"), text
    # the judge config's classifier_path is the first categorical code's judge in judges_for (as --classifier_path)
    found = judges.judges_for([code], src, C.JudgeConfig(classifier_path=path))
    assert found["digit"].path == path and found["digit"].meta["held_out"]["value"] == 0.972


def test_judges_trained_otherwise_are_cached_apart_and_augmentation_is_a_function_of_the_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path))
    src = tiny_source()
    code = C.CodeSpec("digit", "categorical", 10, "label")
    assert C.JudgeConfig().tag("mnist_cnn") == C.JudgeConfig(epochs=5).tag("mnist_cnn") == ""
    assert C.JudgeConfig(epochs=30, augment=True).tag("mnist_cnn") == "_e30_aug"
    assert C.JudgeConfig(augment=True).tag("resnet") == "_aug"
    default = judges.judge_path(src, code, "mnist_cnn")
    assert default == os.path.join(str(tmp_path), "classifiers", f"tiny_label_{judges.data_fingerprint(src)}.keras")
    aug = judges.judge_path(src, code, "mnist_cnn", C.JudgeConfig(epochs=2, augment=True))
    assert aug == default[:-len(".keras")] + "_e2_aug.keras"
    x = tf.constant(src.test_images[:16], tf.float32) / 255.0
    a, b = judges._augment(x, 3, 0), judges._augment(x, 3, 0)
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same (batch number, seed): the same copies
    assert not np.allclose(a.numpy(), judges._augment(x, 4, 0).numpy()) and not np.allclose(a.numpy(), x.numpy())
    judge = judges.get_judge(src, code, C.JudgeConfig(epochs=2, augment=True))
    assert judge.path == aug and os.path.isfile(aug) and not os.path.exists(default)
    assert judge.meta["augment"] is True and judge.meta["epochs"] == 2
    assert "(mnist_cnn, 2 epochs, augmented)" in report._judge_text(report._judge_summary(judge))


def test_eval_table_script_reads_history_and_reports(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_table", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "eval_table.py"))
    eval_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_table)
    run = tmp_path / "run_a"
    (run / "evaluation").mkdir(parents=True)
    (run / "eval_history.jsonl").write_text(
        json.dumps({"step": 1000, "Eval/q_ss_test_r2/x": 0.5}) + "\n" + json.dumps({"step": 2000, "Eval/mig": 0.25})
        + "\n")
    step_report = {"q_real": {"x": {"metric": "r2", "value": 0.91}}}  # an evaluate report of step 2000
    (run / "evaluation" / "eval_2000.json").write_text(json.dumps(step_report))
    text = eval_table.table([str(run)], [("R2 x", "Eval/q_ss_test_r2/x"), ("MIG", "Eval/mig")])
    assert text.splitlines()[2:] == ["| run_a | 1,000 | 0.50 | - |", "| run_a | 2,000 | 0.91 | 0.25 |"]
    assert eval_table.table([str(run)], [("MIG", "Eval/mig")], steps={2000}).count("run_a") == 1


# ------------------------------------------------------------------------------ end-of-run evaluation (eval.json)
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
    config = C.JudgeConfig(architecture="mnist_cnn", epochs=2)
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


def test_q_on_real_batch_statistics_reads_mixed_batches_of_a_class_sorted_split_in_its_order():
    """A test split stored class by class (a folder tree): the batch-statistics reading draws its batches in a
    fixed shuffled order (so a batch holds several classes) and returns each prediction for its own image."""
    codes = C.parse_codes("digit:cat:10:label")
    y = np.repeat(np.arange(10), 30)  # sorted by class, as a class-folder tree is read
    x = np.broadcast_to((y * 20)[:, None, None, None], (300, 4, 4, 1)).astype(np.uint8)  # the class in the pixels
    src = ArraySource("sorted", x, {"label": y}, x.copy(), {"label": y.copy()})

    class Reader:  # classify by the pixel value; records how many classes each batch-statistics batch holds
        ss_codes = codes
        network_config = C.NetworkConfig(image_shape=(4, 4, 1))
        classes_per_batch = []

        def classify(self, images, batch_statistics=False):
            cls = np.rint(np.asarray(images)[:, 0, 0, 0] * 255.0 / 20.0).astype(int)
            if batch_statistics:
                self.classes_per_batch.append(len(set(cls)))
            return {"digit": tf.one_hot(cls, 10)}

    reader = Reader()
    assert report.q_on_real(reader, src, batch_size=50)["digit"]["value"] == 1.0
    assert report.q_on_real(reader, src, batch_size=50, batch_statistics=True)["digit"]["value"] == 1.0
    assert len(reader.classes_per_batch) == 6 and min(reader.classes_per_batch) >= 8  # mixed, not one class each
