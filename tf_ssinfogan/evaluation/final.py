"""Evaluation: the paper's metrics for a trained generator.

1. Independent-classifier accuracy on class-conditioned samples (Spurr et al., Sec. 5: a CNN trained on the
   *test* split and validated on the *train* split, so that it never saw what the GAN trained on).
2. For every categorical code, the best code-to-class assignment (Hungarian, `scipy.optimize`) and the mapped
   accuracy, so that unsupervised codes (plain InfoGAN) compare with semi-supervised ones.
3. Q_ss accuracy on the real test split.
4. The information lower bounds L_I = E[log Q(c|x)] + H(c) against H(c) (Eqs. 2-4).
The end-of-run evaluation (eval.json) uses 1-3. Every dataset and code kind (binary, continuous, per-column
judges), the judge-feature Frechet distance, FID/KID/IS, reports and evaluation during training: `evaluation/report.py`.
"""

from __future__ import annotations

import json
import os
from typing import Dict

import hashlib

import keras
import numpy as np
import tensorflow as tf

from tf_ssinfogan.model import losses
from tf_ssinfogan.evaluation import grids, metrics
from tf_ssinfogan.rundir import paths
from tf_ssinfogan.data.stream import test_dataset
from tf_ssinfogan.model.images import float_to_uint8
from tf_ssinfogan.model.latents import first_enumerable, kind_of
from tf_ssinfogan.data.sources import ArraySource
from tf_ssinfogan.rundir.fileio import write_text_atomic


def q_ss_accuracy(model, source: ArraySource, batch_size: int = 500) -> Dict[str, float]:
    """Accuracy of Q_ss (inference mode) on the real test split, per semi-supervised categorical code.

    Binary codes report the mean per-attribute accuracy at threshold 0.5. Test images whose label is negative
    (unlabelled) are skipped.
    """
    codes = [c for c in model.ss_codes if kind_of(c).has_probabilities]  # kinds scored by accuracy
    correct = {c.name: 0.0 for c in codes}
    count = {c.name: 0.0 for c in codes}
    for images, labels in test_dataset(source, batch_size, model.network_config.data_range):
        probs = model.classify(images)
        for c in codes:
            hit, valid = kind_of(c).label_hits(c, probs[c.name], labels[c.label])
            correct[c.name] += float(tf.reduce_sum(hit))
            count[c.name] += float(tf.reduce_sum(valid))
    return {name: correct[name] / max(count[name], 1.0) for name in correct}


def class_conditioned_grid(model, path: str, per_class: int = 10) -> str:
    """Rows: the values of the first categorical semi-supervised code (else any categorical code)."""
    code = first_enumerable(model.ss_codes) or first_enumerable(model.latent_config.codes)
    if code is None:
        return ""
    latents = grids.class_conditioned_latents(model.latent_space, code.name, per_class)
    images = float_to_uint8(model.generate(latents), model.network_config.data_range).numpy()
    return grids.write_png(path, grids.make_grid(images, code.dim, per_class))


def final_evaluation(model, source: ArraySource, run_dir: str, classifier=None, classifier_meta=None,
                     write: bool = True) -> dict:
    """The end-of-run metrics: Q_ss accuracy on the real test split and, given the independent classifier, its
    accuracy on class-conditioned samples per categorical code. Writes samples_by_class.png, and eval.json
    if `write` (else call `write_final_evaluation`)."""
    result = {"step": model.current_step(), "q_ss_test_accuracy": q_ss_accuracy(model, source)}
    if classifier is not None:
        result["class_conditioned"] = class_conditioned_accuracy(model, classifier)
        result["classifier"] = dict(classifier_meta or {})
    result["samples_by_class"] = class_conditioned_grid(model, paths.RunDir(run_dir).samples_by_class)
    if write:
        write_final_evaluation(run_dir, result)
    return result


def write_final_evaluation(run_dir: str, result: dict) -> str:
    return write_text_atomic(paths.RunDir(run_dir).eval_json, json.dumps(result, indent=2) + "\n")


def classifier_target(latent_config):
    """(label column, classes) that the independent classifier judges: those of the first categorical code tied
    to a label, else None."""
    code = next((c for c in latent_config.codes if kind_of(c).enumerable and c.label is not None), None)
    return (code.label, code.dim) if code is not None else None


# ------------------------------------------------------------------------------------ independent classifier
def build_classifier(image_shape, num_classes: int, seed: int = 0) -> keras.Model:
    """A standard CNN (two 3x3 convolutions, max-pool, FC 128 'features', softmax logits); input float [0, 1]."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(tuple(image_shape), name="images")
    x = keras.layers.Conv2D(32, 3, activation="relu", kernel_initializer=init)(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu", kernel_initializer=init)(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Dropout(0.25, seed=seed)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", kernel_initializer=init, name="features")(x)
    x = keras.layers.Dropout(0.5, seed=seed)(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, logits, name="independent_classifier")


def _unit_range(images_uint8):
    return tf.cast(images_uint8, tf.float32) / 255.0


def train_classifier(source: ArraySource, label_key: str = "label", num_classes: int = 10, epochs: int = 5,
                     batch_size: int = 128, seed: int = 0, verbose: int = 0):
    """Trains the independent classifier on the test split, validates it on the train split (the paper's
    protocol). Returns (model, validation accuracy)."""
    keras.utils.set_random_seed(seed)
    model = build_classifier(source.image_shape, num_classes, seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    y_fit = source.test_labels[label_key]
    keep = y_fit >= 0
    fit = tf.data.Dataset.from_tensor_slices((source.test_images[keep], y_fit[keep])).shuffle(
        int(keep.sum()), seed=seed).batch(batch_size).map(lambda x, y: (_unit_range(x), y))
    model.fit(fit, epochs=epochs, verbose=verbose, shuffle=False)  # shuffled above (seeded)
    return model, classifier_accuracy(model, source.train_images, source.train_labels[label_key])


def classifier_accuracy(model, images_uint8, labels, batch_size: int = 1000) -> float:
    keep = labels >= 0
    logits = model.predict(_unit_range(images_uint8[keep]), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels[keep]))


def data_fingerprint(source: ArraySource) -> str:
    """Short digest of the classifier's training data (the test split), for the cache file name."""
    h = hashlib.sha1(source.test_images.tobytes())
    for k in sorted(source.test_labels):
        h.update(k.encode())
        h.update(np.ascontiguousarray(source.test_labels[k]).tobytes())
    return h.hexdigest()[:12]


def default_classifier_path(source: ArraySource, label_key: str = "label") -> str:
    cache = os.environ.get("TF_SSINFOGAN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tf_ssinfogan"))
    return os.path.join(cache, "classifiers", f"{os.path.splitext(source.name)[0]}_{label_key}_{data_fingerprint(source)}.keras")


def save_classifier(model, path: str, meta: dict) -> str:
    """Saves the classifier (.keras) and its metadata (.json) atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp_{os.getpid()}_{os.path.basename(path)}")
    model.save(tmp)
    os.replace(tmp, path)
    write_text_atomic(path + ".json", json.dumps(meta, indent=2) + "\n")
    return path


def load_classifier(path: str):
    """Loads a cached classifier (Keras safe_mode: no arbitrary code) and its metadata."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"classifier {path!r} does not exist; train it with "
                                f"`python -m tf_ssinfogan.train_classifier`")
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    meta_path = path + ".json"
    meta = {}
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    return model, meta


def get_classifier(source: ArraySource, path: str = "", label_key: str = "label", num_classes: int = 10,
                   epochs: int = 5):
    """The cached classifier for `source`, trained (and cached) on first use. Returns (model, meta)."""
    path = path or default_classifier_path(source, label_key)
    if os.path.isfile(path):
        return load_classifier(path)
    model, acc = train_classifier(source, label_key, num_classes, epochs)
    meta = {"validation_accuracy_on_train_split": acc, "trained_on": "test split", "epochs": epochs,
            "source": source.name, "label": label_key, "fingerprint": data_fingerprint(source)}
    save_classifier(model, path, meta)
    return model, meta


# ------------------------------------------------------------------------------------------------ metrics
hungarian_mapping = metrics.hungarian_mapping  # moved to metrics.py; the old names stay
frechet_distance = metrics.frechet_distance


def to_unit(model, images):
    """Images in the model's data range -> [0, 1]."""
    lo, hi = model.network_config.data_range
    return (tf.cast(images, tf.float32) - lo) / (hi - lo)


def generate_in_batches(model, latents, batch_size=500):
    """G's images (data range) for a latents dict, `batch_size` at a time."""
    n = int(next(iter(latents.values())).shape[0])
    parts = [model.generate({k: v[i:i + batch_size] for k, v in latents.items()}) for i in range(0, n, batch_size)]
    return tf.concat(parts, 0)


def generate_uint8(model, latents, batch_size=500) -> np.ndarray:
    """G's images for a latents dict as uint8 numpy [N, H, W, C]."""
    return float_to_uint8(generate_in_batches(model, latents, batch_size), model.network_config.data_range).numpy()


def class_conditioned_accuracy(model, classifier, per_class: int = 128, seed=(0, 3)) -> Dict[str, dict]:
    """For every categorical code: the classifier's accuracy on samples with that code fixed to each value.

    'accuracy' takes code value i to mean class i (what a semi-supervised code promises); 'mapped_accuracy'
    uses the best Hungarian assignment (what an unsupervised code can be credited with).
    """
    out = {}
    num_classes = int(classifier.output_shape[-1])
    for code in [c for c in model.latent_config.codes if kind_of(c).enumerable]:
        latents = grids.class_conditioned_latents(model.latent_space, code.name, per_class, seed)
        images = to_unit(model, generate_in_batches(model, latents))
        predicted = np.argmax(classifier.predict(images, batch_size=500, verbose=0), -1)
        values = np.repeat(np.arange(code.dim), per_class)
        mapping, mapped, _ = hungarian_mapping(values, predicted, code.dim, num_classes)
        direct = float(np.mean(predicted == values)) if code.dim == num_classes else float("nan")
        out[code.name] = {"accuracy": direct, "mapped_accuracy": mapped, "mapping": mapping.tolist(),
                          "semi_supervised": code.semi_supervised, "samples": int(len(values))}
    return out


def information_bounds(model, num: int = 1000, seed=(0, 5)) -> Dict[str, dict]:
    """L_I per code on fresh samples (Q in inference mode) next to its maximum H(c)."""
    latents = model.latent_space.sample(num, tf.constant(seed))
    q = model.discriminator(generate_in_batches(model, latents), training=False)["q"]
    out = {}
    for code in model.latent_config.codes:
        h = kind_of(code).entropy(code)
        ll = kind_of(code).log_likelihood(code, q[code.name], latents[code.name])
        out[code.name] = {"lower_bound": float(losses.mutual_information_lower_bound(ll, h)), "entropy": h}
    return out


# ----------------------------------------------------------------------------------------- whole evaluation
