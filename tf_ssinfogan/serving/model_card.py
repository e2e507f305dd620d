"""Model cards: what an exported model was trained on, what each code means, and how well it measured.

Training writes `data_info.json` into the run folder (data source, labelled images, class names of every label
column a code uses, the data's licence). Every export writes `assets.extra/model_card.md` (for people) and
`assets.extra/model_card.json` (for programs) into the SavedModel folder, from that file, the run's
configuration and the evaluation of the exported step (`eval.json`, or `evaluation/eval_<step>.json`), and adds
the class names to `model_info.json`. Class names come from the data: TFDS `ClassLabel` names, image-folder
names, or the label values when the data declares none (the shipped MNIST: class i is the digit i).
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Dict, List, Optional

from tf_ssinfogan.rundir import paths
from tf_ssinfogan.model.latents import kind_of
from tf_ssinfogan.rundir.fileio import write_text_atomic

MNIST_LICENCE = ("MNIST database of handwritten digits, Y. LeCun and C. Cortes "
                 "(http://yann.lecun.com/exdb/mnist/), Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0)")
INTENDED_USE = (
    "Research and demonstration: drawing images like the training data with chosen code values "
    "(`serving_default`, `sample`, `traverse`), and reading the codes back from an image (`classify`, which is "
    "Q: a classifier learnt from the labelled images only).")
LIMITS = [
    "It reproduces the training data's distribution, biases included; it knows nothing outside it.",
    "`classify` answers for any image, also one unlike the training data, and is then confidently wrong; "
    "its measured accuracy holds for test images of the same data only.",
    "Generated images are samples of a GAN: some are ambiguous or malformed; the class-conditioned accuracy "
    "below says how often an independent classifier recognises the intended class.",
    "Unsupervised codes have no fixed meaning: read it from the traversal grids before relying on one.",
]


def class_names_of(source, label: str, num: int) -> Dict[str, object]:
    """{'names': [...], 'from': where the names came from} for categorical label column `label` of `source`."""
    column = source.label_columns.get(label)
    names = list(column.class_names) if column is not None and column.class_names else []
    if len(names) == num and not all(n == str(i) for i, n in enumerate(names)):
        return {"names": names, "from": "the data's class names (TFDS features or folder names)"}
    if len(names) == num:
        return {"names": names, "from": "the folder names (numbered)"}
    return {"names": [str(i) for i in range(num)], "from": "the label values (the data declares no class names)"}


def data_licence(data_config) -> str:
    if data_config.source == "npz" and not data_config.npz_path:
        return MNIST_LICENCE
    if data_config.source == "tfds":
        if data_config.tfds_name == "mnist":
            return MNIST_LICENCE
        return (f"see the dataset's terms (TFDS catalogue: https://www.tensorflow.org/datasets/catalog/"
                f"{data_config.tfds_name})")
    return "not recorded (your own data: its licence applies to the trained weights and their samples)"


def data_facts(cfg, source, num_labelled: int) -> dict:
    """What `data_info.json` records about the training data of run `cfg`."""
    d = cfg.data
    location = {"npz": d.npz_path or "shipped MNIST (tf_ssinfogan/data_files/mnist.npz)",
                "tfds": f"{d.tfds_name} ({d.train_split} / {d.test_split})", "image_folder": d.image_dir}
    names = {c.label: class_names_of(source, c.label, c.dim) for c in cfg.latent.codes
             if kind_of(c).enumerable and c.label is not None}
    return {
        "source": d.source, "dataset": source.name, "location": location.get(d.source, ""),
        "image_shape": list(source.image_shape), "train_images": int(len(source.train_images)),
        "test_images": int(len(source.test_images)), "labelled_images": int(num_labelled),
        "labelled_fraction": num_labelled / max(len(source.train_images), 1),
        "labelled_selection": d.labelled_selection, "label_seed": d.label_seed,
        "class_names": names, "licence": data_licence(d),
    }


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def evaluation_for_step(run_dir: str, step: int) -> Optional[dict]:
    """The run's evaluation of `step` (eval.json, else evaluation/eval_<step>.json), or None."""
    rd = paths.RunDir(run_dir)
    for path in [rd.eval_json] + sorted(glob.glob(os.path.join(rd.evaluation, "eval_*.json")), reverse=True):
        result = _read_json(path)
        if result and result.get("step") == step:
            return result
    return None


def card_data(cfg, step: int, run_dir: str, evaluation: Optional[dict] = None) -> dict:
    """The model card of the model of run `cfg` at `step` (as JSON-ready data)."""
    facts = _read_json(paths.RunDir(run_dir).data_info) or {}
    evaluation = evaluation if evaluation is not None else evaluation_for_step(run_dir, step)
    names = facts.get("class_names", {})
    labelled = cfg.data.labelled_fraction > 0 or (cfg.data.labelled_count or 0) > 0
    conditioned = (evaluation or {}).get("class_conditioned", {})
    codes = []
    for c in cfg.latent.codes:
        entry = {"name": c.name, "kind": c.kind, "dim": c.dim, "label": c.label,
                 "semi_supervised": c.label is not None and labelled}
        n = names.get(c.label) if c.label is not None else next(iter(names.values()), None)
        if kind_of(c).enumerable and n and entry["semi_supervised"]:
            entry["class_names"] = n["names"]
            entry["class_names_from"] = n["from"]
        entry["meaning"] = kind_of(c).meaning(c, n, conditioned.get(c.name, {}).get("mapping"), labelled)
        codes.append(entry)
    metrics = {}
    if evaluation:
        metrics["step"] = evaluation.get("step")
        metrics["q_ss_test_accuracy"] = evaluation.get("q_ss_test_accuracy", {})
        for name, r in conditioned.items():
            metrics.setdefault("classifier_accuracy_on_class_conditioned_samples", {})[name] = {
                k: r.get(k) for k in ("accuracy", "mapped_accuracy", "samples")}
        if "classifier" in evaluation:
            judge = evaluation["classifier"]
            metrics["classifier_own_accuracy"] = judge.get("validation_accuracy_on_train_split",
                                                           judge.get("held_out", {}).get("value"))
            metrics["classifier_trained_on"] = judge.get("trained_on", "test split")
            metrics["classifier_held_out_split"] = judge.get("held_out_split", "train")
        if "frechet_distance" in evaluation:
            metrics["frechet_distance"] = evaluation["frechet_distance"]
    return {
        "model": "ss-InfoGAN generator and Q (Spurr, Aksan and Hilliges, ECML 2017)"
                 if labelled else "InfoGAN generator and Q (Chen et al., 2016)",
        "step": step, "architecture": cfg.network.architecture, "image_shape": list(cfg.network.image_shape),
        "data_range": list(cfg.network.data_range), "noise": {"dim": cfg.latent.noise_dim,
                                                              "distribution": cfg.latent.noise_distribution},
        "data": facts, "codes": codes, "metrics": metrics,
        "intended_use": INTENDED_USE, "limits": LIMITS,
        "licence": {"code": "Apache-2.0 (tf_ssinfogan)",
                    "training_data": facts.get("licence", data_licence(cfg.data)),
                    "note": "the weights and their samples derive from the training data; its licence applies"},
    }


def class_names(card: dict) -> Dict[str, List[str]]:
    """{code name: class names} for the categorical codes of a card (model_info.json's 'class_names')."""
    return {c["name"]: c["class_names"] for c in card.get("codes", []) if "class_names" in c}


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def render_markdown(card: dict) -> str:
    """The card as Markdown."""
    d, m = card.get("data", {}), card.get("metrics", {})
    lines = [f"# Model card: {card['model']}", "",
             f"Trained for {card['step']} steps; `{card['architecture']}` networks, images "
             f"{'x'.join(str(v) for v in card['image_shape'])} in {card['data_range']}, noise "
             f"{card['noise']['dim']}-dimensional {card['noise']['distribution']}.", "", "## Data", ""]
    if d:
        lines += [f"- {d.get('dataset')} ({d.get('source')}: {d.get('location')}): {d.get('train_images')} "
                  f"training images, {d.get('test_images')} test images",
                  f"- labelled: {d.get('labelled_images')} images ({_pct(d.get('labelled_fraction'))}, "
                  f"{d.get('labelled_selection')}, seed {d.get('label_seed')})"]
    else:
        lines.append("- not recorded (the run folder has no data_info.json)")
    lines += ["", "## Codes (inputs of `serving_default`, outputs of `classify`)", "",
              "| code | kind | dim | label | meaning |", "|---|---|---|---|---|"]
    for c in card["codes"]:
        lines.append(f"| `{c['name']}` | {c['kind']} | {c['dim']} | {c['label'] or '-'} | {c['meaning']} |")
    lines += ["", "## Measured quality", ""]
    if m:
        lines.append(f"Evaluation of step {m.get('step')}:")
        for name, r in m.get("classifier_accuracy_on_class_conditioned_samples", {}).items():
            lines.append(f"- `{name}`: an independent classifier (trained on the "
                         f"{m.get('classifier_trained_on', 'test split')}) recognises the "
                         f"intended class in {_pct(r.get('accuracy'))} of {r.get('samples')} class-conditioned "
                         f"samples (best code-to-class match: {_pct(r.get('mapped_accuracy'))})")
        for name, acc in m.get("q_ss_test_accuracy", {}).items():
            lines.append(f"- `classify` (Q) accuracy for `{name}` on the real test split: {_pct(acc)}")
        if m.get("classifier_own_accuracy") is not None:
            lines.append(f"- the independent classifier's own accuracy on the "
                         f"{m.get('classifier_held_out_split', 'train')} split: {_pct(m['classifier_own_accuracy'])}")
        if m.get("frechet_distance") is not None:
            lines.append(f"- Frechet distance to real test images (classifier features): {m['frechet_distance']:.2f}")
    else:
        lines.append(f"Not measured for step {card['step']}: run `tf-ssinfogan-evaluate` on the run folder, then "
                     "export again.")
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limits", ""]
    lines += [f"- {x}" for x in card["limits"]]
    lic = card["licence"]
    lines += ["", "## Licence", "", f"- code: {lic['code']}", f"- training data: {lic['training_data']}",
              f"- {lic['note']}", ""]
    return "\n".join(lines)


def write_card(folder: str, card: dict) -> None:
    """Writes model_card.md and model_card.json into `folder` (an export's assets.extra)."""
    write_text_atomic(os.path.join(folder, "model_card.json"), json.dumps(card, indent=2) + "\n")
    write_text_atomic(os.path.join(folder, "model_card.md"), render_markdown(card))
