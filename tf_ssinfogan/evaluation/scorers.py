"""What the evaluation measures per code kind: one table, `KINDS`, keyed by `CodeSpec.kind`.

Each kind supplies
  * its judge's loss and targets, and the judge's own figure on held-out images (`judge_held_out`);
  * the score of a generator's samples read by the judge (`on_samples`):
      categorical - accuracy on class-conditioned samples (code value i = class i; Spurr et al. 2017, Sec. 5)
                    and after the best Hungarian code-to-class assignment (for unsupervised codes);
      binary      - per attribute, the judge's balanced accuracy on samples with that bit set to 0 and to 1
                    (the other latents shared between the two halves);
      continuous  - Pearson and Spearman correlation between the code fed to G and the judge's reading;
  * Q's score on real labelled test images (`q_on_real`): accuracy, per-attribute accuracy, R^2;
  * its rows of the report (`report_rows`: the Markdown table) and its TensorBoard scalars (`scalars`).
Judges take images in [0, 1]; their outputs are logits (categorical, binary) or values (continuous).
"""

from __future__ import annotations

from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from tf_ssinfogan.evaluation import grids, metrics


def fmt(v, pct=False) -> str:
    """A report figure: 'n/a' when missing or not finite, a percentage with `pct`."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{100 * v:.2f}%" if pct else f"{v:.4g}"


def generate_unit(model, latents, batch_size: int = 500) -> tf.Tensor:
    """G's images for a latents dict, in batches, scaled from the data range to [0, 1]."""
    return grids.to_unit(model, grids.generate_in_batches(model, latents, batch_size))


def read(judge_model, images_unit, batch_size: int = 500) -> np.ndarray:
    return np.asarray(judge_model.predict(images_unit, batch_size=batch_size, verbose=0))


class Categorical:
    metric = "accuracy"
    samples_setting = "per_class"  # the EvalConfig field that sets how many samples: samples per code value
    sample_text = "judge accuracy on class-conditioned samples (value i = class i)"

    @staticmethod
    def report_rows(r: dict, s: dict) -> list:
        """(metric, value) rows of the report for a code's entry `r` and its `on_samples` figures `s`."""
        rows = [(Categorical.sample_text, fmt(s["accuracy"], True))] if r["semi_supervised"] else []
        which = "semi-supervised" if r["semi_supervised"] else "unsupervised"
        return rows + [(f"Hungarian-mapped accuracy ({which} code)", fmt(s["mapped_accuracy"], True))]

    @staticmethod
    def scalars(code: str, r: dict, s: dict) -> dict:
        out = {f"Eval/classifier_mapped_accuracy/{code}": s["mapped_accuracy"]}
        if np.isfinite(s["accuracy"]) and r["semi_supervised"]:
            out[f"Eval/classifier_accuracy/{code}"] = s["accuracy"]
        return out

    @staticmethod
    def judge_loss():
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @staticmethod
    def judge_targets(y, code):
        return np.asarray(y, np.int64).reshape(-1)

    @staticmethod
    def judge_held_out(logits, y, code) -> dict:
        return {"metric": "accuracy", "value": float(np.mean(np.argmax(logits, -1) == np.asarray(y).reshape(-1)))}

    @staticmethod
    def on_samples(model, code, judge_model, per_value: int, seed=(0, 3)) -> dict:
        latents = grids.class_conditioned_latents(model.latent_space, code.name, per_value, seed)
        predicted = np.argmax(read(judge_model, generate_unit(model, latents)), -1)
        values = np.repeat(np.arange(code.dim), per_value)
        num_classes = int(judge_model.output_shape[-1])
        mapping, mapped, _ = metrics.hungarian_mapping(values, predicted, code.dim, num_classes)
        direct = float(np.mean(predicted == values)) if code.dim == num_classes else float("nan")
        main = direct if code.semi_supervised else mapped
        return {"metric": "accuracy" if code.semi_supervised else "mapped_accuracy", "value": main,
                "accuracy": direct, "mapped_accuracy": mapped, "mapping": mapping.tolist(),
                "samples": int(len(values))}

    @staticmethod
    def q_on_real(q_out, y, code) -> dict:
        return {"metric": "accuracy", "value": float(np.mean(np.argmax(q_out, -1) == np.asarray(y).reshape(-1)))}


class Binary:
    metric = "balanced_accuracy"
    samples_setting = "per_class"  # the EvalConfig field that sets how many samples: samples per bit value
    sample_text = "judge balanced accuracy, samples with the bit at 0 and at 1"

    @staticmethod
    def report_rows(r: dict, s: dict) -> list:
        per = ", ".join(fmt(v, True) for v in s["per_dim"]) if len(s["per_dim"]) > 1 else ""
        return [(Binary.sample_text, fmt(s["value"], True) + (f" ({per})" if per else ""))]

    @staticmethod
    def scalars(code: str, r: dict, s: dict) -> dict:
        return {f"Eval/judge_balanced_accuracy/{code}": s["value"]}

    @staticmethod
    def judge_loss():
        return keras.losses.BinaryCrossentropy(from_logits=True)

    @staticmethod
    def judge_targets(y, code):
        return np.asarray(y, np.float32).reshape(-1, code.dim)

    @staticmethod
    def judge_held_out(logits, y, code) -> dict:
        y = np.asarray(y).reshape(-1, code.dim) > 0
        pred = np.asarray(logits).reshape(-1, code.dim) > 0
        per = [metrics.balanced_accuracy(y[:, j], pred[:, j]) for j in range(code.dim)]
        return {"metric": "balanced_accuracy", "value": float(np.mean(per)), "per_dim": per,
                "accuracy": float(np.mean(pred == y))}

    @staticmethod
    def on_samples(model, code, judge_model, per_value: int, seed=(0, 3)) -> dict:
        base = model.latent_space.sample(per_value, tf.constant(seed))
        truth = np.repeat([0, 1], per_value)
        per = []
        for j in range(code.dim):
            preds = []
            for bit in (0.0, 1.0):
                values = np.array(base[code.name])
                values[:, j] = bit
                logits = read(judge_model, generate_unit(model, {**base, code.name: tf.constant(values)}))
                preds.append(logits.reshape(-1, code.dim)[:, j] > 0)
            per.append(metrics.balanced_accuracy(truth, np.concatenate(preds)))
        return {"metric": "balanced_accuracy", "value": float(np.mean(per)), "per_dim": per,
                "samples": int(2 * per_value * code.dim)}

    @staticmethod
    def q_on_real(q_out, y, code) -> dict:
        y = np.asarray(y).reshape(-1, code.dim) > 0
        pred = np.asarray(q_out).reshape(-1, code.dim) > 0.5
        per = [float(np.mean(pred[:, j] == y[:, j])) for j in range(code.dim)]
        return {"metric": "accuracy", "value": float(np.mean(per)), "per_dim": per,
                "balanced_accuracy": [metrics.balanced_accuracy(y[:, j], pred[:, j]) for j in range(code.dim)]}


class Continuous:
    metric = "pearson"
    samples_setting = "continuous_samples"  # the EvalConfig field that sets how many samples: samples in all
    sample_text = "Pearson / Spearman: code fed to G vs judge's reading"

    @staticmethod
    def report_rows(r: dict, s: dict) -> list:
        return [(Continuous.sample_text, f"{fmt(s['value'])} / {fmt(s['spearman_mean'])}")]

    @staticmethod
    def scalars(code: str, r: dict, s: dict) -> dict:
        return {f"Eval/judge_pearson/{code}": s["value"], f"Eval/judge_spearman/{code}": s["spearman_mean"]}

    @staticmethod
    def judge_loss():
        return keras.losses.MeanSquaredError()

    @staticmethod
    def judge_targets(y, code):
        return np.asarray(y, np.float32).reshape(-1, code.dim)

    @staticmethod
    def judge_held_out(pred, y, code) -> dict:
        y, pred = np.asarray(y).reshape(-1, code.dim), np.asarray(pred).reshape(-1, code.dim)
        r2 = [metrics.r_squared(y[:, j], pred[:, j]) for j in range(code.dim)]
        return {"metric": "r2", "value": float(np.mean(r2)), "per_dim": r2,
                "pearson": [metrics.pearson(y[:, j], pred[:, j]) for j in range(code.dim)]}

    @staticmethod
    def on_samples(model, code, judge_model, num: int, seed=(0, 3)) -> dict:
        latents = model.latent_space.sample(num, tf.constant(seed))
        fed = np.asarray(latents[code.name]).reshape(-1, code.dim)
        reading = read(judge_model, generate_unit(model, latents)).reshape(-1, code.dim)
        pear = [metrics.pearson(fed[:, j], reading[:, j]) for j in range(code.dim)]
        spear = [metrics.spearman(fed[:, j], reading[:, j]) for j in range(code.dim)]
        return {"metric": "pearson", "value": float(np.mean(pear)), "pearson": pear, "spearman": spear,
                "spearman_mean": float(np.mean(spear)), "samples": int(num)}

    @staticmethod
    def q_on_real(q_out, y, code) -> dict:
        y, q_out = np.asarray(y).reshape(-1, code.dim), np.asarray(q_out).reshape(-1, code.dim)
        r2 = [metrics.r_squared(y[:, j], q_out[:, j]) for j in range(code.dim)]
        return {"metric": "r2", "value": float(np.mean(r2)), "per_dim": r2}


KINDS: Dict[str, object] = {"categorical": Categorical, "binary": Binary, "continuous": Continuous}
