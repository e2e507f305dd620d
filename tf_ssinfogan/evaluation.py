"""Evaluation: Q_ss accuracy on real test images and the class-conditioned sample grid."""

from __future__ import annotations

import json
import os
from typing import Dict

import numpy as np
import tensorflow as tf

from tf_ssinfogan import visualize
from tf_ssinfogan.data import ArraySource, float_to_uint8, test_dataset
from tf_ssinfogan.fileio import write_text_atomic


def q_ss_accuracy(model, source: ArraySource, batch_size: int = 500) -> Dict[str, float]:
    """Accuracy of Q_ss (inference mode) on the real test split, per semi-supervised categorical code.

    Binary codes report the mean per-attribute accuracy at threshold 0.5. Test images whose label is negative
    (unlabelled) are skipped.
    """
    codes = [c for c in model.ss_codes if c.kind in ("categorical", "binary")]
    correct = {c.name: 0.0 for c in codes}
    count = {c.name: 0.0 for c in codes}
    for images, labels in test_dataset(source, batch_size, model.network_config.data_range):
        probs = model.classify(images)
        for c in codes:
            y = labels[c.label]
            if c.kind == "categorical":
                valid = tf.cast(y >= 0, tf.float32)
                hit = tf.cast(tf.equal(tf.argmax(probs[c.name], -1), tf.cast(y, tf.int64)), tf.float32)
                correct[c.name] += float(tf.reduce_sum(hit * valid))
                count[c.name] += float(tf.reduce_sum(valid))
            else:
                y = tf.reshape(tf.cast(y, tf.float32), [-1, c.dim])
                hit = tf.cast(tf.equal(probs[c.name] > 0.5, y > 0.5), tf.float32)
                correct[c.name] += float(tf.reduce_sum(tf.reduce_mean(hit, -1)))
                count[c.name] += float(tf.shape(y)[0])
    return {name: correct[name] / max(count[name], 1.0) for name in correct}


def class_conditioned_grid(model, path: str, per_class: int = 10) -> str:
    """Rows: the values of the first categorical semi-supervised code (else any categorical code)."""
    cats = [c for c in model.ss_codes if c.kind == "categorical"] or \
        [c for c in model.latent_config.codes if c.kind == "categorical"]
    if not cats:
        return ""
    code = cats[0]
    latents = visualize.class_conditioned_latents(model.latent_space, code.name, per_class)
    images = float_to_uint8(model.generate(latents), model.network_config.data_range).numpy()
    return visualize.write_png(path, visualize.make_grid(images, code.dim, per_class))


def final_evaluation(model, source: ArraySource, run_dir: str) -> dict:
    """Writes eval.json and samples_by_class.png into the run folder and returns the metrics."""
    result = {"step": model.current_step(), "q_ss_test_accuracy": q_ss_accuracy(model, source)}
    result["samples_by_class"] = class_conditioned_grid(model, os.path.join(run_dir, "samples_by_class.png"))
    write_text_atomic(os.path.join(run_dir, "eval.json"), json.dumps(result, indent=2) + "\n")
    return result
