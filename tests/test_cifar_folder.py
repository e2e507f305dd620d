"""CIFAR-10 without TFDS: the class-folder source (ROOT/train/<class>/, ROOT/test/<class>/) with class names, the
TFDS path's fast offline failure, and a model trained on a folder exported for others (class names, `classify` on
32x32 photos). Every tree is made here, small; the network is never reached (the offline tests refuse it)."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan import config as C
from tf_ssinfogan.data import stream as D
from tf_ssinfogan.data import sources
from tf_ssinfogan.serving import model_card
from tf_ssinfogan.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("cat", "dog", "emu")


def _photo(seed, size=32):
    """A smooth random colour image (JPEG keeps it close), uint8 [size, size, 3]."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (4, 4, 3)).astype(np.float32)
    return tf.cast(tf.image.resize(small[None], (size, size), "bilinear")[0], tf.uint8).numpy()


def make_tree(root, per_class=4, test_per_class=2, size=32):
    """root/train/<class>/NNNN.jpg (one .png per class) and root/test/<class>/NNNN.jpg; returns {path: pixels}."""
    written = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c, name in enumerate(CLASSES):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(n):
                x = _photo(hash((split, c, i)) % 2**31, size)
                png = i == 1
                path = os.path.join(root, split, name, f"{i:04d}.{'png' if png else 'jpg'}")
                tf.io.write_file(path, tf.io.encode_png(x) if png else tf.io.encode_jpeg(x, quality=90))
                written[path] = x
    return written


# ------------------------------------------------------------------------------------------ the folder source
def test_class_folders_load_with_their_names_as_classes(tmp_path):
    root = str(tmp_path / "cifar_like")
    written = make_tree(root)
    src = sources.load_image_folder(root, channels=3)
    assert src.name == "cifar_like"
    assert src.train_images.shape == (12, 32, 32, 3) and src.train_images.dtype == np.uint8
    assert src.test_images.shape == (6, 32, 32, 3)
    assert src.train_labels["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4  # sorted names, sorted files
    assert src.test_labels["label"].tolist() == [0, 0, 1, 1, 2, 2]
    column = src.column("label")
    assert column.kind == "categorical" and column.num_classes == 3 and column.class_names == CLASSES
    # PNG exact; JPEG decoded with the accurate DCT, as PIL decodes it
    from PIL import Image

    paths = sorted(p for p in written if "/train/" in p)
    for i, p in enumerate(paths):
        want = written[p] if p.endswith(".png") else np.asarray(Image.open(p).convert("RGB"))
        np.testing.assert_array_equal(src.train_images[i], want, err_msg=p)


def test_class_folders_grey_resized_and_numbered(tmp_path):
    root = tmp_path / "numbered"
    for name, size in (("0", 32), ("2", 40), ("10", 32)):
        os.makedirs(root / "train" / name)
        tf.io.write_file(str(root / "train" / name / "a.png"), tf.io.encode_png(_photo(len(name), size)))
    src = sources.load_image_folder(str(root), resize_to=(16, 16), channels=1)
    assert src.train_images.shape == (3, 16, 16, 1)
    assert src.train_labels["label"].tolist() == [0, 2, 10]  # numbered folders keep their number
    assert src.column("label").num_classes is None
    np.testing.assert_array_equal(src.test_images, src.train_images)  # no test/: the training images stand in


def test_class_folder_errors_name_the_file_or_folder(tmp_path):
    root = tmp_path / "t"
    make_tree(str(root), per_class=2, test_per_class=1)
    (root / "train" / "stray.jpg").write_bytes(b"x")
    with pytest.raises(sources.DataError, match=r"stray\.jpg' lies directly in .*train'"):
        sources.load_image_folder(str(root))
    os.remove(root / "train" / "stray.jpg")
    (root / "train" / "owl").mkdir()
    with pytest.raises(sources.DataError, match=r"class folder .*train/owl' holds no images"):
        sources.load_image_folder(str(root))
    os.rmdir(root / "train" / "owl")
    (root / "test" / "yak").mkdir()
    tf.io.write_file(str(root / "test" / "yak" / "a.png"), tf.io.encode_png(_photo(0)))
    with pytest.raises(sources.DataError, match=r"test classes \['yak'\] .* are not among the training classes"):
        sources.load_image_folder(str(root))
    os.remove(root / "test" / "yak" / "a.png"), os.rmdir(root / "test" / "yak")
    tf.io.write_file(str(root / "train" / "dog" / "big.png"), tf.io.encode_png(_photo(1, 40)))
    with pytest.raises(sources.DataError, match=r"big\.png' is 40x40 but .*cat/0000\.jpg' is 32x32"):
        sources.load_image_folder(str(root))
    os.remove(root / "train" / "dog" / "big.png")
    (root / "train" / "emu" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(sources.DataError, match=r"broken\.jpg' is corrupt or not an image"):
        sources.load_image_folder(str(root))
    with pytest.raises(sources.DataError, match=r"or train/<class>/"):
        sources.load_image_folder(str(tmp_path))


def test_labelled_fraction_and_balanced_selection_apply_to_the_folder_source(tmp_path):
    root = str(tmp_path / "c")
    make_tree(root, per_class=4)
    src = sources.load_image_folder(root)
    cfg = C.ExperimentConfig(run_dir=str(tmp_path / "run"))
    latent = C.LatentConfig(noise_dim=4, codes=C.parse_codes("object:cat:3:label,c1:cont:1"))
    data = dataclasses.replace(cfg.data, source="image_folder", image_dir=root, labelled_fraction=0.5,
                               labelled_selection="balanced")
    sources.check_source_matches(src, latent, (32, 32, 3))
    stream = D.TrainStream(src, latent, data, 4, (-1.0, 1.0))
    assert stream.num_labelled == 6
    assert np.bincount(src.train_labels["label"][stream.labelled_idx]).tolist() == [2, 2, 2]
    facts = model_card.data_facts(dataclasses.replace(cfg, latent=latent, data=data), src, stream.num_labelled)
    assert facts["class_names"]["label"]["names"] == list(CLASSES)
    assert facts["location"] == root and facts["train_images"] == 12


def test_cifar_folder_config_is_cifar_with_the_folder_source():
    from test_datasets import _flat, config_from_flagfile

    cifar, folder = _flat(config_from_flagfile("cifar")), _flat(config_from_flagfile("cifar_folder"))
    changed = {k: folder[k] for k in cifar if cifar[k] != folder[k]}
    assert changed == {"data.source": "image_folder", "data.image_dir": "data/cifar10_jpeg"}, changed
    assert config_from_flagfile("cifar_folder").run_dir == "runs/cifar_folder"
    assert config_from_flagfile("cifar_folder").data.channels == 3


# ------------------------------------------------------------------------------------------ offline TFDS
def _no_network(monkeypatch):
    """Every connection attempt fails as it does without a network (the name does not resolve)."""
    calls = []

    def refuse(address, *args, **kwargs):
        calls.append(address)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


def test_tfds_without_network_fails_fast_naming_both_ways_on(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    from test_datasets import config_from_flagfile

    import tensorflow_datasets as tfds

    def no_download(*args, **kwargs):  # what retried for minutes before: never reached now
        raise AssertionError("download_and_prepare was called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    cfg = config_from_flagfile("cifar", f"--run_dir={tmp_path / 'run'}", f"--tfds_data_dir={tmp_path / 'tfds'}")
    with pytest.raises(sources.DataError) as e:
        trainer.train(cfg)
    # fast by construction (wall time is measured outside the tests): one bounded probe of the download host, no
    # download attempt, so no retries
    assert [c[0] for c in calls] == ["www.cs.toronto.edu"]
    msg = str(e.value)
    assert "TFDS dataset 'cifar10' is not prepared in" in msg and "cannot be downloaded" in msg
    assert "Name or service not known" in msg
    assert f"cifar-10-binary.tar.gz (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) into " \
           f"{tmp_path / 'tfds' / 'downloads' / 'manual'}{os.sep}" in msg
    assert "add --source=image_folder --image_dir=ROOT to the same command" in msg
    assert "ROOT/train/<class>/*.jpg" in msg and "--flagfile=configs/cifar_folder.flags" in msg
    assert not os.path.exists(cfg.run_dir)  # no half-written run folder
    assert not os.path.exists(tmp_path / "tfds" / "cifar10")


def test_tfds_offline_check_passes_a_manual_copy_and_bounds_a_silent_resolver(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10", data_dir=str(tmp_path / "tfds"))
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "cifar-10-binary.tar.gz").write_bytes(b"")

    def never(hosts):
        raise AssertionError("no network check when the manual copy is there")

    assert sources.tfds_unavailable(builder, True, probe=never) is None
    assert "--nodownload forbids" in sources.tfds_unavailable(builder, False, probe=never)
    assert "rerun without --nodownload" in sources.tfds_unavailable(builder, False, probe=never)

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(5))
    t0 = time.perf_counter()
    problem = sources.network_problem([("www.cs.toronto.edu", 443)], timeout=0.3)
    assert time.perf_counter() - t0 < 4 and "no answer within 0.3 s" in problem  # the connect would take 5 s


@pytest.mark.slow
def test_the_users_command_offline_exits_2_within_seconds(tmp_path):
    """`python -m tf_ssinfogan.train --flagfile=configs/cifar.flags` with every connection refused."""
    code = ("import socket, sys\n"
            "def refuse(*a, **k): raise socket.gaierror(-2, 'Name or service not known')\n"
            "socket.create_connection = socket.getaddrinfo = refuse\n"
            "from tf_ssinfogan import train\n"
            "sys.argv = ['train'] + sys.argv[1:]\n"
            "train.run()\n")
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, "--flagfile=configs/cifar.flags", f"--run_dir={run_dir}",
                          f"--tfds_data_dir={tmp_path / 'tfds'}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    seconds = time.perf_counter() - t0
    assert out.returncode == 2, out.stderr[-3000:]
    assert "error: TFDS dataset 'cifar10' is not prepared" in out.stderr
    assert "--source=image_folder --image_dir=ROOT" in out.stderr and "downloads/manual/" in out.stderr
    assert "Traceback" not in out.stderr
    assert not run_dir.exists()
    assert seconds < 120, seconds  # TensorFlow's import included; TFDS alone retries for minutes


# ------------------------------------------------------------------------------------------ the CIFAR judge
def _big(n_train, names=CLASSES, test_is_train=False):
    """Zero images and cycling labels: enough for `judges.resolve`, which reads only shapes and labels."""
    x = np.zeros((n_train, 32, 32, 3), np.uint8)
    y = (np.arange(n_train) % len(names)).astype(np.int64)
    test_x, test_y = (x, y) if test_is_train else (x[:30], y[:30])
    return sources.ArraySource("big", x, {"label": y}, test_x, {"label": test_y},
                               {"label": sources.LabelColumn("categorical", len(names), tuple(names))})


def test_auto_recipe_takes_the_train_split_for_cifar_like_data_only():
    from tf_ssinfogan.evaluation import judges

    code = C.CodeSpec("object", "categorical", 3, "label")
    auto = C.JudgeConfig()
    assert judges.resolve(_big(20000), code, auto) == ("train_split", "resnet9")
    assert judges.resolve(_big(19999), code, auto) == ("paper", "resnet")  # too few training images
    assert judges.resolve(_big(20000, ("0", "1", "2")), code, auto) == ("paper", "resnet")  # digits: no flips
    assert judges.resolve(_big(20000, test_is_train=True), code, auto) == ("paper", "resnet")  # no own test split
    assert judges.resolve(_big(20000), code, C.JudgeConfig(recipe="paper")) == ("paper", "resnet")
    assert judges.resolve(_big(20000), code, C.JudgeConfig(architecture="resnet")) == ("train_split", "resnet")
    assert judges.resolve(_big(30), code, C.JudgeConfig(recipe="train_split")) == ("train_split", "resnet9")
    with pytest.raises(C.ConfigError, match="judge recipe 'best' is not one of"):
        C.JudgeConfig(recipe="best").validate()


@pytest.mark.slow
def test_train_split_judge_recipe_splits_tag_and_cache(tmp_path, monkeypatch):
    """The 'train_split' recipe trains on the train split and measures on the test split; its file name carries
    its tag (and a digest of the train split); a second call loads it from the cache; the paper's recipe on the
    same data is another file, trained on the test split."""
    from tf_ssinfogan.evaluation import judges

    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))
    root = str(tmp_path / "tree")
    make_tree(root, per_class=4, test_per_class=2)
    src = sources.load_image_folder(root)
    code = C.CodeSpec("object", "categorical", 3, "label")
    cfg = C.JudgeConfig(recipe="train_split", epochs=1, batch_size=4)
    path = judges.judge_path(src, code, "resnet", cfg)  # 'auto' architecture: the recipe's (resnet9) wins
    assert os.path.basename(path).startswith("tree_label_categorical3_resnet9_")
    assert path.endswith("_trainsplit_e1.keras")
    judge = judges.get_judge(src, code, cfg)
    assert judge.path == path and os.path.isfile(path) and os.path.isfile(path + ".json")
    m = judge.meta
    assert (m["recipe"], m["trained_on"], m["trained_examples"]) == ("train_split", "train split", 12)
    assert (m["held_out_split"], m["held_out_examples"]) == ("test", 6)
    assert m["held_out"]["metric"] == "accuracy" and 0.0 <= m["held_out"]["value"] <= 1.0
    assert m["architecture"] == "resnet9" and m["epochs"] == 1 and "measured on the test split" in m["recipe_text"]
    assert judge.model.get_layer("features").output.shape[-1] == 128

    def no_training(*args, **kwargs):
        raise AssertionError("a cached judge is not trained again")

    monkeypatch.setattr(judges, "train_judge_on_train_split", no_training)
    again = judges.get_judge(src, code, cfg)
    assert again.path == path and again.meta == m

    paper = judges.get_judge(src, code, C.JudgeConfig(recipe="paper", epochs=1, batch_size=4))
    assert paper.path != path and "trainsplit" not in paper.path
    assert (paper.meta["recipe"], paper.meta["trained_examples"], paper.meta["held_out_split"]) == ("paper", 6, "train")


# ------------------------------------------------------------------------------------------ the export
@pytest.mark.slow
def test_a_folder_trained_model_exports_class_names_and_classifies_32x32_photos(tmp_path, monkeypatch):
    """configs/cifar_folder.flags on a tree made here, 2 steps of batch 8: data_info.json, model_info.json and the
    model card name the folder classes; serving_default takes the class by index; classify and classify_uint8
    answer for real 32x32x3 photos (uint8 and float in the data range) with the same classes."""
    from test_datasets import config_from_flagfile

    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))
    root = str(tmp_path / "photos")
    written = make_tree(root, per_class=4, test_per_class=2)
    cfg = config_from_flagfile(
        "cifar_folder", f"--run_dir={tmp_path / 'run'}", f"--image_dir={root}", "--codes=object:cat:3:label,c1:cont:1",
        "--labelled_fraction=0.5", "--batch_size=8", "--steps=2", "--steps_per_epoch=1", "--checkpoint_every_epochs=1",
        "--grid_every_epochs=1", "--verbose=0")
    result = trainer.train(cfg)
    assert result.step == 2 and result.export_path
    facts = json.load(open(tmp_path / "run" / "data_info.json"))
    assert facts["class_names"]["label"]["names"] == list(CLASSES) and facts["labelled_images"] == 6
    info = json.load(open(os.path.join(result.export_path, "assets.extra", "model_info.json")))
    assert info["class_names"] == {"object": list(CLASSES)}
    card = json.load(open(os.path.join(result.export_path, "assets.extra", "model_card.json")))
    assert {c["name"]: c.get("class_names") for c in card["codes"]}["object"] == list(CLASSES)
    assert "0 = 'cat', 1 = 'dog', 2 = 'emu'" in open(
        os.path.join(result.export_path, "assets.extra", "model_card.md")).read()

    loaded = tf.saved_model.load(result.export_path)
    photos = np.stack([written[p] for p in sorted(written) if "/test/" in p])  # 6 real 32x32x3 uint8 photos
    out_u8 = loaded.signatures["classify_uint8"](images=tf.constant(photos))
    out_f = loaded.signatures["classify"](images=tf.constant(photos.astype(np.float32) / 127.5 - 1.0))
    assert out_u8["object"].dtype == tf.int32 and out_u8["object"].shape == (6,)
    assert out_u8["object_probs"].shape == (6, 3)
    np.testing.assert_allclose(out_u8["object_probs"].numpy(), out_f["object_probs"].numpy(), atol=1e-5)
    assert set(out_u8["object"].numpy().tolist()) <= {0, 1, 2}
    images = loaded.signatures["serving_default"](
        noise=tf.zeros([3, 100]), object=tf.constant([0, 1, 2], tf.int32), c1=tf.zeros([3, 1]))
    assert images["images_uint8"].shape == (3, 32, 32, 3) and images["images_uint8"].dtype == tf.uint8


def test_the_report_names_the_judges_recipe_and_held_out_split():
    from tf_ssinfogan.evaluation import report

    text = report._judge_text({"label": "label", "architecture": "resnet9", "epochs": 12, "recipe": "train_split",
                                  "held_out": {"metric": "accuracy", "value": 0.8734}, "held_out_split": "test",
                                  "held_out_examples": 10000})
    assert text == ("`label` judge (resnet9, trained on the train split, crops and flips): accuracy 87.34% on 10000 "
                    "held-out test images")


@pytest.mark.slow
def test_folder_loader_benchmark_reports_time_memory_and_shapes(tmp_path):
    root = str(tmp_path / "tree")
    make_tree(root, per_class=2, test_per_class=1)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "folder_loaders.py"), f"--root={root}",
                          "--loaders=package"], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["loader"] == "package" and row["train"] == [6, 32, 32, 3] and row["test"] == [3, 32, 32, 3]
    assert row["seconds"] > 0 and row["peak_rss_mb"] >= row["rss_after_imports_mb"] > 0
