"""Model cards: class names from the data, the card's content, and the end-of-run classifier evaluation."""

import dataclasses
import json
import os

import numpy as np
import pytest

from tf_ssinfogan import config as C
from tf_ssinfogan.evaluation import judges
from tf_ssinfogan.rundir import paths
from tf_ssinfogan.serving import model_card
from tf_ssinfogan.data.sources import ArraySource, LabelColumn
from conftest import tiny_config, tiny_source


def _source(names):
    src = tiny_source()
    return dataclasses.replace(src, label_columns={"label": LabelColumn("categorical", 10, tuple(names))})


def test_class_names_come_from_the_data_else_from_the_label_values():
    animals = [f"animal_{i}" for i in range(10)]
    got = model_card.class_names_of(_source(animals), "label", 10)
    assert got["names"] == animals and "TFDS" in got["from"]
    numbered = [str(i) for i in range(10)]
    assert model_card.class_names_of(_source(numbered), "label", 10)["from"] == "the folder names (numbered)"
    got = model_card.class_names_of(tiny_source(), "label", 10)  # an npz declares none
    assert got["names"] == numbered and "declares no class names" in got["from"]


def test_data_licence_names_the_shipped_mnist_and_asks_for_your_own():
    assert "CC BY-SA 3.0" in model_card.data_licence(C.DataConfig())
    assert "CC BY-SA 3.0" in model_card.data_licence(C.DataConfig(source="tfds", tfds_name="mnist"))
    assert "catalog/cifar10" in model_card.data_licence(C.DataConfig(source="tfds", tfds_name="cifar10"))
    assert "your own data" in model_card.data_licence(C.DataConfig(source="image_folder", image_dir="x"))


def _card_run(tmp_path, names, evaluation):
    cfg = C.ExperimentConfig(run_dir=str(tmp_path), latent=C.LatentConfig(
        codes=C.parse_codes("kind:cat:3:label,style:cat:3,c1:cont:1")))
    src = ArraySource("pets", np.zeros((10, 28, 28, 1), np.uint8), {"label": np.arange(10) % 3},
                      np.zeros((4, 28, 28, 1), np.uint8), {"label": np.arange(4) % 3},
                      {"label": LabelColumn("categorical", 3, tuple(names))})
    paths.write_data_info(str(tmp_path), model_card.data_facts(cfg, src, num_labelled=2))
    if evaluation:
        with open(tmp_path / "eval.json", "w") as f:
            json.dump(evaluation, f)
    return cfg


def test_card_explains_each_code_with_class_names_and_the_measured_metrics(tmp_path):
    evaluation = {"step": 300, "q_ss_test_accuracy": {"kind": 0.875},
                  "class_conditioned": {"kind": {"accuracy": 0.9, "mapped_accuracy": 0.95, "mapping": [0, 1, 2],
                                                 "samples": 384, "semi_supervised": True},
                                        "style": {"accuracy": float("nan"), "mapped_accuracy": 0.5,
                                                  "mapping": [2, 0, 1], "samples": 384, "semi_supervised": False}},
                  "classifier": {"validation_accuracy_on_train_split": 0.97}}
    cfg = _card_run(tmp_path, ["cat", "dog", "eel"], evaluation)
    card = model_card.card_data(cfg, 300, str(tmp_path))  # finds eval.json of step 300
    codes = {c["name"]: c for c in card["codes"]}
    assert codes["kind"]["class_names"] == ["cat", "dog", "eel"] and codes["kind"]["semi_supervised"]
    assert "0 = 'cat', 1 = 'dog', 2 = 'eel'" in codes["kind"]["meaning"]
    assert "class_names" not in codes["style"]  # unsupervised: no fixed meaning, only the measured match
    assert "0 ~ 'eel', 1 ~ 'cat', 2 ~ 'dog'" in codes["style"]["meaning"]
    assert "U(-1, 1)" in codes["c1"]["meaning"]
    assert card["data"]["labelled_images"] == 2 and card["data"]["labelled_fraction"] == 0.2
    assert model_card.class_names(card) == {"kind": ["cat", "dog", "eel"]}
    md = model_card.render_markdown(card)
    assert "recognises the intended class in 90.00% of 384" in md and "87.50%" in md and "97.00%" in md
    assert "## Intended use" in md and "## Limits" in md and "CC BY-SA 3.0" in md


def test_card_of_an_unevaluated_step_says_so(tmp_path):
    cfg = _card_run(tmp_path, ["cat", "dog", "eel"], {"step": 300, "q_ss_test_accuracy": {"kind": 0.5}})
    card = model_card.card_data(cfg, 400, str(tmp_path))
    assert card["metrics"] == {}
    assert "Not measured for step 400" in model_card.render_markdown(card)


@pytest.mark.slow
def test_final_classifier_eval_goes_into_eval_json_and_the_export_card(tmp_path, monkeypatch):
    from tf_ssinfogan.training import trainer

    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path, final_classifier_eval=True)
    result = trainer.train(cfg, source=tiny_source())
    ev = json.load(open(os.path.join(cfg.run_dir, "eval.json")))
    digit = ev["class_conditioned"]["digit"]
    assert digit["samples"] == 1280 and 0.0 <= digit["accuracy"] <= 1.0 and digit["semi_supervised"]
    assert ev["classifier"]["trained_on"] == "test split"
    assert os.listdir(tmp_path / "cache" / "classifiers")
    card = json.load(open(os.path.join(result.export_path, "assets.extra", "model_card.json")))
    assert card["metrics"]["classifier_accuracy_on_class_conditioned_samples"]["digit"]["accuracy"] == \
        digit["accuracy"]


@pytest.mark.slow
def test_a_stronger_judge_for_the_final_and_periodic_evaluations_is_cached_apart(tmp_path, monkeypatch):
    from tf_ssinfogan.training import trainer

    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path, final_classifier_eval=True, judge_epochs=2, judge_augment=True, eval_every_epochs=2,
                      export_at_end=False)
    trainer.train(cfg, source=tiny_source())
    ev = json.load(open(os.path.join(cfg.run_dir, "eval.json")))
    assert ev["classifier"]["epochs"] == 2 and ev["classifier"]["augment"] is True
    assert ev["classifier"]["architecture"] == "mnist_cnn" and ev["class_conditioned"]["digit"]["samples"] == 1280
    # one judge, trained once for both evaluations, under its own name; the paper's default judge never trained
    assert sorted(f for f in os.listdir(tmp_path / "cache" / "classifiers") if f.endswith(".keras")) == \
        [f"tiny_label_{judges.data_fingerprint(tiny_source())}_e2_aug.keras"]
