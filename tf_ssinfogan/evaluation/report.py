"""One evaluation of a generator, for any dataset and code kinds, and its report (JSON + Markdown).

Metric groups (`EvalConfig.metrics`):
  codes    - per semi-supervised code, its judge's score of class/bit/value-conditioned samples and Q's score on
             real test images (`scorers.KINDS`); unsupervised categorical codes get the Hungarian-mapped
             accuracy against a categorical judge of the data, when there is one.
  judge_fd - Frechet distance between real test images and samples in a judge's 128-d 'features' layer
             (offline; comparable only between runs on the same data and judge).
  info     - the information lower bounds L_I = E[log Q(c|x)] + H(c) next to H(c) (InfoGAN, Eqs. 2-4).
  fid, kid, is - FID (Heusel et al. 2017), KID (Binkowski et al. 2018) on InceptionV3 pool features and the
             Inception Score (Salimans et al. 2016) of the samples, `num_samples` each (`evaluation/inception.py`).

The end-of-run evaluation of a training run (`final_evaluation`, metrics group 'final') reads the same scorers: Q
on the real test split (`q_on_real`) and the independent classifier on class-conditioned samples
(`scorers.Categorical.on_samples`, Spurr et al. 2017, Sec. 5).

One result format, one writer (`write_result`): eval.json (the end of training) and evaluation/eval_<step>.json
(`tf_ssinfogan.evaluate`) hold a dict with 'step', 'metrics' (the groups computed) and each group's keys; 'final'
and 'codes' both give 'q_real' (per code: metric, value, examples), 'q_ss_test_accuracy' (code: accuracy) and,
with a judge, 'class_conditioned' (code: `on_samples`'s figures and semi_supervised) and 'classifier' (its meta);
'final' adds 'samples_by_class' (the grid's path), 'codes' adds 'codes' and 'q_real_batch_statistics'.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_ssinfogan.evaluation import grids, judges, metrics, scorers
from tf_ssinfogan.evaluation.scorers import fmt
from tf_ssinfogan.model import losses
from tf_ssinfogan.model.images import images_to_float
from tf_ssinfogan.model.latents import kind_of
from tf_ssinfogan.config import INCEPTION_METRICS, JUDGE_DEFAULT_EPOCHS, ConfigError, EvalConfig
from tf_ssinfogan.data.stream import test_dataset
from tf_ssinfogan.data.sources import ArraySource, known_rows
from tf_ssinfogan.rundir import paths
from tf_ssinfogan.rundir.fileio import write_text_atomic

FINAL = "final"  # the metrics group of the end-of-run evaluation (eval.json)


# ------------------------------------------------------------------------------------ end of a training run
def class_conditioned_entry(code, r: dict) -> dict:
    """A 'class_conditioned' row of a result: `scorers.Categorical.on_samples`'s figures and whether the code is
    semi-supervised."""
    return {**r, "semi_supervised": code.semi_supervised}


def class_conditioned_accuracy(model, classifier, per_class: int = 128, seed=(0, 3)) -> Dict[str, dict]:
    """For every categorical code: the classifier's accuracy on samples with that code fixed to each value
    (`scorers.Categorical.on_samples`): 'accuracy' takes code value i to mean class i (what a semi-supervised code
    promises), 'mapped_accuracy' uses the best Hungarian assignment (what an unsupervised code can be credited
    with)."""
    return {code.name: class_conditioned_entry(code, scorers.Categorical.on_samples(model, code, classifier,
                                                                                    per_class, seed))
            for code in model.latent_config.codes if kind_of(code).enumerable}


def q_ss_accuracies(q_real: Dict[str, dict]) -> Dict[str, float]:
    """The 'q_ss_test_accuracy' of a result: Q_ss's accuracy per code scored by accuracy (categorical; binary: the
    mean per-attribute accuracy) from its 'q_real' (`q_on_real`); codes without known test labels are left out."""
    return {name: r["value"] for name, r in q_real.items() if r.get("metric") == "accuracy"}


def q_ss_test_accuracy(model, source: ArraySource, batch_size: int = 500) -> Dict[str, float]:
    """Q_ss's accuracy on the real test split per semi-supervised code scored by accuracy (`q_ss_accuracies`)."""
    return q_ss_accuracies(q_on_real(model, source, batch_size))


def final_evaluation(model, source: ArraySource, run_dir: str, classifier=None, classifier_meta=None,
                     write: bool = True) -> dict:
    """The end-of-run evaluation (metrics group 'final'): Q on the real test split and, given the independent
    classifier, its accuracy on class-conditioned samples per categorical code. Writes samples_by_class.png, and
    eval.json if `write` (else call `write_final_evaluation`)."""
    real = q_on_real(model, source)
    result = {"step": model.current_step(), "metrics": [FINAL], "q_real": real,
              "q_ss_test_accuracy": q_ss_accuracies(real)}
    if classifier is not None:
        result["class_conditioned"] = class_conditioned_accuracy(model, classifier)
        result["classifier"] = dict(classifier_meta or {})
    result["samples_by_class"] = grids.class_conditioned_grid(model, paths.RunDir(run_dir).samples_by_class)
    if write:
        write_final_evaluation(run_dir, result)
    return result


def write_final_evaluation(run_dir: str, result: dict) -> str:
    """eval.json (`write_result`)."""
    return write_result(result, paths.RunDir(run_dir).eval_json)


def information_bounds(model, num: int = 1000, seed=(0, 5)) -> Dict[str, dict]:
    """L_I per code on fresh samples (Q in inference mode) next to its maximum H(c)."""
    latents = model.latent_space.sample(num, tf.constant(seed))
    q = model.discriminator(grids.generate_in_batches(model, latents), training=False)["q"]
    out = {}
    for code in model.latent_config.codes:
        h = kind_of(code).entropy(code)
        ll = kind_of(code).log_likelihood(code, q[code.name], latents[code.name])
        out[code.name] = {"lower_bound": float(losses.mutual_information_lower_bound(ll, h)), "entropy": h}
    return out


# ------------------------------------------------------------------------------------------ evaluation
def _sample_uint8(model, num: int, seed, batch_size: int = 500) -> np.ndarray:
    return grids.generate_uint8(model, model.latent_space.sample(num, tf.constant(seed)), batch_size)


def _real_subset(source: ArraySource, num: int, seed: int) -> np.ndarray:
    n = min(num, len(source.test_images))
    idx = np.sort(np.random.RandomState(seed).permutation(len(source.test_images))[:n])
    return source.test_images[idx]


def q_on_real(model, source: ArraySource, batch_size: int = 500, batch_statistics: bool = False) -> Dict[str, dict]:
    """Q's score on the labelled real test images, per semi-supervised code (`scorers.KINDS[kind].q_on_real`):
    in inference mode (as `classify` and the export read), or with `batch_statistics` normalising each batch of
    `batch_size` real images by its own statistics (a check of the moving statistics). The batch-statistics
    reading takes the images in a fixed shuffled order (seed 0): a test split stored class by class (a folder
    of class sub-folders) would otherwise give one-class batches, whose statistics are not the data's."""
    codes = list(model.ss_codes)
    if not codes:
        return {}
    outs = {c.name: [] for c in codes}
    if batch_statistics:
        n = len(source.test_images)
        order = np.random.default_rng(0).permutation(n)
        batches = (images_to_float(source.test_images[order[i:i + batch_size]], model.network_config.data_range)
                   for i in range(0, n, batch_size))
        read = lambda x: model.classify(x, batch_statistics=True)  # noqa: E731
    else:
        order = None
        batches = (images for images, _ in test_dataset(source, batch_size, model.network_config.data_range))
        read = model.classify
    for images in batches:
        q = read(images)
        for c in codes:
            outs[c.name].append(np.asarray(q[c.name]))
    result = {}
    for c in codes:
        y = np.asarray(source.test_labels[c.label])
        pred = np.concatenate(outs[c.name])
        if order is not None:  # back to the split's order
            pred = pred[np.argsort(order)]
        keep = known_rows(y, c.kind)
        if not keep.any():
            result[c.name] = {"unavailable": f"no known {c.label!r} labels in the test split"}
            continue
        result[c.name] = {**scorers.KINDS[c.kind].q_on_real(pred[keep], y[keep], c), "examples": int(keep.sum())}
    return result


def _judge_summary(judge) -> dict:
    return {"path": judge.path, "label": judge.meta.get("label"), "architecture": judge.meta.get("architecture"),
            "epochs": judge.meta.get("epochs"), "augment": bool(judge.meta.get("augment", False)),
            "recipe": judge.meta.get("recipe", "paper"), "trained_on": judge.meta.get("trained_on", "test split"),
            "held_out": judge.held_out, "held_out_split": judge.meta.get("held_out_split", "train"),
            "held_out_examples": judge.meta.get("held_out_examples")}


def code_metrics(model, judges: Dict[str, object], cfg: EvalConfig, category_judge=None) -> Dict[str, dict]:
    """Per code: the judge's score of samples (see scorers) and the judge's own held-out figure."""
    out = {}
    for i, code in enumerate(model.latent_config.codes):
        kind = scorers.KINDS[code.kind]
        seed = (cfg.seed, 3 + i)
        entry = {"kind": code.kind, "dim": code.dim, "label": code.label, "semi_supervised": code.semi_supervised}
        judge = judges.get(code.name) if code.semi_supervised else (
            category_judge if kind_of(code).enumerable else None)
        if judge is None:
            if code.semi_supervised or kind_of(code).enumerable:
                entry["judge"] = {"unavailable": "no categorical label column in the data to map this code onto"}
                out[code.name] = entry
            continue
        if isinstance(judge, Exception):
            entry["judge"] = {"unavailable": str(judge)}
            out[code.name] = entry
            continue
        entry["samples"] = kind.on_samples(model, code, judge.model, getattr(cfg, kind.samples_setting), seed)
        entry["judge"] = _judge_summary(judge)
        out[code.name] = entry
    return out


def judge_frechet_distance(model, judge, source: ArraySource, num: int, seed: int = 0) -> dict:
    """Frechet distance in the judge's 'features' layer between real test images and samples (offline)."""
    features = keras.Model(judge.model.inputs, judge.model.get_layer("features").output)
    real = _real_subset(source, num, seed)
    fake = _sample_uint8(model, len(real), (seed, 4))

    def feats(x):
        return features.predict(tf.cast(x, tf.float32) / 255.0, batch_size=500, verbose=0)

    return {"value": metrics.frechet_distance(feats(real), feats(fake)), "samples": int(len(real)),
            "judge": judge.path, "judge_label": judge.meta.get("label")}


def inception_metrics(model, source: ArraySource, cfg: EvalConfig,
                      extractor: Callable[[np.ndarray], Dict[str, np.ndarray]]) -> dict:
    """FID, KID and IS (those in cfg.metrics) of `cfg.num_samples` samples against the real test images."""
    want = [m for m in cfg.metrics if m in INCEPTION_METRICS]
    real = _real_subset(source, cfg.num_samples, cfg.seed)
    fake = _sample_uint8(model, cfg.num_samples, (cfg.seed, 6))
    f_fake = extractor(fake)
    out = {"fake_samples": int(len(fake)), "real_samples": int(len(real)),
           "feature_dim": int(f_fake["pool"].shape[-1]), "is_splits": cfg.is_splits}
    if "fid" in want or "kid" in want:
        f_real = extractor(real)
        if "fid" in want:
            out["fid"] = metrics.frechet_distance(f_real["pool"], f_fake["pool"])
        if "kid" in want:
            mean, std = metrics.kernel_inception_distance(f_real["pool"], f_fake["pool"], cfg.kid_subsets,
                                                          cfg.kid_subset_size, cfg.seed)
            out["kid"] = {"mean": mean, "std": std, "subsets": cfg.kid_subsets,
                          "subset_size": min(cfg.kid_subset_size, len(real), len(fake))}
        if "is" in want and "probs" in f_real:
            out["inception_score_real"] = dict(zip(("mean", "std"), metrics.inception_score(f_real["probs"],
                                                                                           cfg.is_splits)))
    if "is" in want:
        if "probs" not in f_fake:
            raise ConfigError("the Inception Score needs an extractor with a classification head ('probs')")
        out["inception_score"] = dict(zip(("mean", "std"), metrics.inception_score(f_fake["probs"], cfg.is_splits)))
    return out


def evaluate(model, source: ArraySource, cfg: EvalConfig = EvalConfig(), judges: Optional[dict] = None,
             category_judge=None, extractor=None, grids_dir: str = "", step: Optional[int] = None,
             extractor_info: Optional[dict] = None) -> dict:
    """Every metric of `cfg.metrics` for one model. `judges`: code name -> Judge (or the reason it has none),
    from `judges.judges_for`; `extractor`: uint8 images -> {'pool', 'probs'} (e.g.
    `inception.imagenet_extractor()`), needed for fid/kid/is. Writes traversal grids to `grids_dir` if given."""
    cfg.validate()
    judges = judges or {}
    result = {"step": model.current_step() if step is None else step, "metrics": list(cfg.metrics)}
    if "codes" in cfg.metrics:
        result["codes"] = code_metrics(model, judges, cfg, category_judge)
        result["q_real"] = q_on_real(model, source)
        result["q_real_batch_statistics"] = q_on_real(model, source, batch_statistics=True)
        # the figures that the end-of-run evaluation reports too, under the same names
        result["q_ss_test_accuracy"] = q_ss_accuracies(result["q_real"])
        result["class_conditioned"] = {code.name: class_conditioned_entry(code, result["codes"][code.name]["samples"])
                                       for code in model.latent_config.codes if kind_of(code).enumerable
                                       and "samples" in result["codes"].get(code.name, {})}
        first = _first_judge(model, judges, category_judge)
        if first is not None:
            result["classifier"] = dict(first.meta)
    if "judge_fd" in cfg.metrics:
        first = _first_judge(model, judges, category_judge)
        result["judge_frechet_distance"] = (
            judge_frechet_distance(model, first, source, cfg.judge_fd_samples, cfg.seed) if first is not None
            else {"unavailable": "no judge (no semi-supervised code and no categorical 'label' column)"})
    if "info" in cfg.metrics:
        result["information_bounds"] = information_bounds(model)
    if cfg.needs_inception:
        if extractor is None:
            raise ConfigError("fid/kid/is need an InceptionV3 extractor (inception.imagenet_extractor)")
        result["inception"] = {**(extractor_info or {}), **inception_metrics(model, source, cfg, extractor)}
    if grids_dir:
        result["traversal_grids"] = grids.write_code_grids(model, grids_dir, result["step"])
    return result


def _first_judge(model, judges, category_judge):
    """The judge whose features the offline distance uses: the first categorical code's, else any code's."""
    ordered = sorted(model.ss_codes, key=lambda c: not kind_of(c).enumerable)
    for code in ordered:
        j = judges.get(code.name)
        if j is not None and not isinstance(j, Exception):
            return j
    return category_judge


# ---------------------------------------------------------------------------------------------- reporting
def scalars(result: dict) -> Dict[str, float]:
    """Flat 'Eval/...' -> value view of a result (TensorBoard tags, eval_history.jsonl)."""
    out = {}
    for code, r in result.get("q_real", {}).items():
        if "value" in r:
            name = "q_ss_test_accuracy" if r["metric"] == "accuracy" else f"q_ss_test_{r['metric']}"
            out[f"Eval/{name}/{code}"] = r["value"]
    for code, r in result.get("q_real_batch_statistics", {}).items():
        if "value" in r:
            out[f"Eval/q_ss_test_{r['metric']}_batch_statistics/{code}"] = r["value"]
    for code, r in result.get("codes", {}).items():
        if r.get("samples"):
            out.update(scorers.KINDS[r["kind"]].scalars(code, r, r["samples"]))
    if "value" in result.get("judge_frechet_distance", {}):
        out["Eval/judge_frechet_distance"] = result["judge_frechet_distance"]["value"]
    inc = result.get("inception", {})
    if "fid" in inc:
        out["Eval/fid"] = inc["fid"]
    if "kid" in inc:
        out["Eval/kid"] = inc["kid"]["mean"]
    if "inception_score" in inc:
        out["Eval/inception_score"] = inc["inception_score"]["mean"]
    for code, r in result.get("information_bounds", {}).items():
        out[f"Eval/information_bound/{code}"] = r["lower_bound"]
    for code, r in result.get("colour_codes", {}).items():
        out[f"Eval/pixel_colour_accuracy/{code}"] = r["accuracy"]
    sprites = result.get("sprite_factors", {})
    for code, r in sprites.get("codes", {}).items():
        out[f"Eval/pixel_factor_{'pearson' if 'pearson' in r else 'accuracy'}/{code}"] = r.get("pearson",
                                                                                           r.get("accuracy"))
    if "mig" in sprites:
        out["Eval/mig"] = sprites["mig"]
    for code, r in result.get("measured_factors", {}).get("codes", {}).items():
        out[f"Eval/pixel_factor_pearson/{code}"] = r["pearson"]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def _judge_text(j: dict) -> str:
    if "unavailable" in j:
        return f"no judge: {j['unavailable']}"
    h = j.get("held_out", {})
    pct = h.get("metric") in ("accuracy", "balanced_accuracy")
    epochs = j.get("epochs")
    recipe = [f"{epochs} epoch{'s' * (epochs != 1)}"] if epochs and epochs != JUDGE_DEFAULT_EPOCHS.get(
        j.get("architecture")) else []  # a judge trained otherwise than by default says how
    recipe += ["augmented"] if j.get("augment") else []
    recipe += ["trained on the train split, crops and flips"] if j.get("recipe") == "train_split" else []
    recipe = "".join(", " + r for r in recipe)
    return (f"`{j.get('label')}` judge ({j.get('architecture')}{recipe}): {h.get('metric', '?')} "
            f"{fmt(h.get('value'), pct)} on {j.get('held_out_examples')} held-out {j.get('held_out_split')} images")


def markdown_report(result: dict, title: str = "") -> str:
    """A short Markdown table of every metric in `result`, each judge's own held-out figure beside its score."""
    lines = [f"# Evaluation{': ' + title if title else ''}, step {result['step']}", "",
             "| metric | code | value | judge's own figure |", "|---|---|---|---|"]
    for code, r in result.get("codes", {}).items():
        j = r.get("judge", {})
        s = r.get("samples")
        if s is None:
            what = scorers.KINDS[r["kind"]].sample_text if r["semi_supervised"] else \
                "Hungarian-mapped accuracy (unsupervised code)"
            lines.append(f"| {what} | {code} | n/a | {_judge_text(j)} |")
            continue
        for what, value in scorers.KINDS[r["kind"]].report_rows(r, s):
            lines.append(f"| {what} | {code} | {value} | {_judge_text(j)} |")
    for code, r in result.get("q_real", {}).items():
        what = {"accuracy": "Q accuracy on real test images", "r2": "Q R^2 on real test images"}[r.get("metric",
                                                                                                     "accuracy")]
        value = fmt(r["value"], r["metric"] == "accuracy") if "value" in r else f"n/a ({r.get('unavailable')})"
        batch = result.get("q_real_batch_statistics", {}).get(code, {})
        note = (f"batch statistics: {fmt(batch['value'], r['metric'] == 'accuracy')}" if "value" in batch else "-")
        lines.append(f"| {what} | {code} | {value} | {note} |")
    fd = result.get("judge_frechet_distance")
    if fd:
        lines.append(f"| Frechet distance in the judge's 128-d features ({fd.get('samples', 0)} real vs generated; "
                     f"offline, not FID) | | {fmt(fd.get('value'))} | `{fd.get('judge_label')}` judge |")
    inc = result.get("inception", {})
    n = f"{inc.get('real_samples')} real vs {inc.get('fake_samples')} generated"
    weights = inc.get("weights", "")
    if "fid" in inc:
        lines.append(f"| FID (InceptionV3 pool, {n}) | | {fmt(inc['fid'])} | weights `{weights}` |")
    if "kid" in inc:
        lines.append(f"| KID x 1000 ({inc['kid']['subsets']} subsets of {inc['kid']['subset_size']}) | | "
                     f"{fmt(1000 * inc['kid']['mean'])} +- {fmt(1000 * inc['kid']['std'])} | |")
    if "inception_score" in inc:
        real = inc.get("inception_score_real")
        lines.append(f"| Inception Score ({inc['fake_samples']} samples, {inc.get('is_splits', '?')} splits) | | "
                     f"{fmt(inc['inception_score']['mean'])} +- {fmt(inc['inception_score']['std'])} | "
                     f"{'real test images: ' + fmt(real['mean']) if real else ''} |")
    for code, r in result.get("information_bounds", {}).items():
        lines.append(f"| information lower bound L_I (max H(c)) | {code} | {r['lower_bound']:.3f} "
                     f"({r['entropy']:.3f}) | |")
    for code, r in result.get("colour_codes", {}).items():
        lines.append(f"| colour of class-conditioned samples read from their pixels | {code} | "
                     f"{fmt(r['accuracy'], True)} | no judge (pixels) |")
    sprites = result.get("sprite_factors")
    if sprites:
        for code, r in sprites["codes"].items():
            value = (f"{fmt(r['pearson'])} / {fmt(r['spearman'])}" if "pearson" in r else fmt(r["accuracy"], True))
            what = "Pearson / Spearman" if "pearson" in r else "accuracy"
            lines.append(f"| code vs {r['factor']} measured on {sprites['samples']} samples ({what}) | {code} | "
                         f"{value} | no judge (pixels) |")
        lines.append(f"| mutual information gap (every code vs the measured factors) | | {fmt(sprites['mig'])} | |")
    measured = result.get("measured_factors")
    for code, r in (measured or {}).get("codes", {}).items():
        lines.append(f"| code vs {r['factor']} measured on {measured['samples']} samples (Pearson / Spearman) | "
                     f"{code} | {fmt(r['pearson'])} / {fmt(r['spearman'])} | no judge (pixels) |")
    grids = result.get("traversal_grids", [])
    if grids:
        lines += ["", "Traversal grids:", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in grids]
    return "\n".join(lines) + "\n"


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def write_result(result: dict, path: str) -> str:
    """The one writer of an evaluation result (eval.json, evaluation/eval_<step>.json): JSON, atomically."""
    return write_text_atomic(path, json.dumps(result, indent=2, default=_json_default) + "\n")


def write_report(result: dict, out_dir: str, title: str = "") -> Tuple[str, str]:
    """eval_<step>.json (`write_result`) and report_<step>.md (and report.md, the latest) in `out_dir`, each
    written atomically."""
    step = int(result["step"])
    json_path = write_result(result, os.path.join(out_dir, f"eval_{step:06d}.json"))
    md = markdown_report(result, title)
    md_path = write_text_atomic(os.path.join(out_dir, f"report_{step:06d}.md"), md)
    write_text_atomic(os.path.join(out_dir, "report.md"), md)
    return json_path, md_path


class EvaluationCallback(keras.callbacks.Callback):
    """Runs `evaluate` every `every_epochs` epochs; logs its scalars to TensorBoard and one JSON line each to
    `history_path` (convergence curves)."""

    def __init__(self, source: ArraySource, judges: dict, category_judge, log_dir: str, every_epochs: int,
                 cfg: EvalConfig = EvalConfig(per_class=64, judge_fd_samples=1000), history_path: str = "",
                 extractor=None, extra_scores: Optional[Callable[[object], dict]] = None):
        """`extra_scores(model)`: judge-free scores merged into each result (`factors.built_data_scores`)."""
        super().__init__()
        self.extra_scores = extra_scores
        self.source, self.judges, self.category_judge, self.cfg = source, judges, category_judge, cfg
        self.every, self.extractor = every_epochs, extractor
        self.writer = tf.summary.create_file_writer(log_dir)
        self.history_path = history_path

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        with self.model.averaged_weights():  # the moving averages, where the run keeps them
            result = evaluate(self.model, self.source, self.cfg, self.judges, self.category_judge, self.extractor)
            if self.extra_scores is not None:
                result.update(self.extra_scores(self.model))
        values = scalars(result)
        with self.writer.as_default(step=result["step"]):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)
        self.writer.flush()
        if self.history_path:
            with open(self.history_path, "a") as f:  # one JSON line per evaluation
                f.write(json.dumps({"step": result["step"], **values}) + "\n")
