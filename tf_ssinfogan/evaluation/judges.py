"""Independent judges: one network per (dataset, label column, code kind), trained once and cached.

The protocol of Spurr et al. (2017, Sec. 5): a judge is trained on the *test* split and its own figure is
measured on the *train* split (images it never saw; the GAN trained on them), so it never judged what it
learnt from. What a judge predicts follows the code kind (`scorers.KINDS`): classes (categorical codes),
independent 0/1 attributes (binary codes, multi-label) or values (continuous codes, a regressor).

Recipes (`JudgeConfig.recipe`): 'paper' is the protocol above. 'train_split' trains on the *train* split (random
4-pixel crops and horizontal flips, SGD with a warm-up and cosine decay, label smoothing) and measures on the
*test* split: CIFAR-10's 10,000 test images are a small training set for a judge that should recognise 85% or
more of real photos, its 50,000 training images are not. The judge then learnt from the images the GAN imitates;
its held-out figure is on test images that neither saw. 'auto' (the default) takes 'train_split'
for categorical codes on 32x32 colour images with named classes (not digits: flips keep an object's class, not a
digit's), at least 20,000 labelled training images and a separate test split (CIFAR-10, TFDS or class folders),
and 'paper' otherwise. Every judge's metadata names its recipe, training split and held-out split.

Architectures: 'mnist_cnn' (the paper's two-convolution CNN, `build_mnist_cnn`, 5 epochs) for
28x28 grey images; 'resnet' (a small residual CNN, He et al. 2016: 3 stages of one residual block each,
32/64/128 channels, BatchNorm, global average pool) for other images, e.g. 32x32 colour; 'resnet9' (the
ResNet-9 of Page's DAWNBench CIFAR-10 runs at 3/8 of its width, 24/48/96/192 channels) for the 'train_split'
recipe. Every judge has a 128-d layer named 'features' (the offline Frechet distance uses it) and one named
'logits'.

Cache: `$TF_SSINFOGAN_CACHE/classifiers/` (default `~/.cache/tf_ssinfogan/`), a `.keras` file per judge and
its metadata (`.keras.json`: the held-out figure, epochs, data fingerprint). The MNIST digit judge of the paper's
recipe keeps the name `<source>_<label>_<fingerprint>.keras`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_ssinfogan.evaluation import scorers
from tf_ssinfogan.model.images import affine_images, random_affine_params, random_shift
from tf_ssinfogan.model.latents import kind_of
from tf_ssinfogan.config import JUDGE_DEFAULT_EPOCHS, CodeSpec, ConfigError, JudgeConfig
from tf_ssinfogan.data.sources import ArraySource, known_rows
from tf_ssinfogan.rundir.fileio import write_text_atomic

TRAIN_SPLIT_MIN_IMAGES = 20000  # 'auto' takes 'train_split' from this many labelled training images
RECIPE_TEXT = {"paper": "trained on the test split, measured on the train split (Spurr et al. 2017)",
               "train_split": "trained on the train split (random 4-pixel crops, horizontal flips), measured on the "
                              "test split"}


class JudgeUnavailable(ValueError):
    """No judge can be trained for this column (e.g. no known labels in the test split); names the reason."""


@dataclasses.dataclass
class Judge:
    model: keras.Model
    meta: dict
    path: str

    @property
    def held_out(self) -> dict:
        return self.meta.get("held_out", {})


def choose_architecture(image_shape, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "mnist_cnn" if tuple(image_shape) == (28, 28, 1) else "resnet"


def build_mnist_cnn(image_shape, num_classes: int, seed: int = 0) -> keras.Model:
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


def build_resnet(image_shape, width: int, seed: int = 0) -> keras.Model:
    """Small residual CNN for 32x32-ish images: conv 32, then 3 stages (32, 64/2, 128/2) of one residual block
    (two 3x3 conv + BN, projection shortcut when the shape changes), GAP, FC 128 'features', FC 'logits'.
    BatchNorm momentum 0.9: the moving statistics settle within the few hundred steps a judge trains."""
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input(tuple(image_shape), name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, kernel_initializer=init)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    for filters, stride in ((32, 1), (64, 2), (128, 2)):
        y = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, kernel_initializer=init)(x)
        y = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(y))
        y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init)(y)
        y = keras.layers.BatchNormalization(momentum=0.9)(y)
        if stride != 1 or int(x.shape[-1]) != filters:
            x = keras.layers.BatchNormalization(momentum=0.9)(
                keras.layers.Conv2D(filters, 1, stride, use_bias=False, kernel_initializer=init)(x))
        x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(128, activation="relu", kernel_initializer=init, name="features")(x)
    x = keras.layers.Dropout(0.3, seed=seed)(x)
    logits = keras.layers.Dense(width, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                                name="logits")(x)
    return keras.Model(inputs, logits, name="independent_judge")


def build_resnet9(image_shape, width: int, seed: int = 0, widths=(24, 48, 96, 192)) -> keras.Model:
    """ResNet-9 (Page 2018, "How to train your ResNet", the DAWNBench CIFAR-10 network) at 3/8 of its width:
    conv 24; conv 48 + pool, residual block 48; conv 96 + pool; conv 192 + pool, residual block 192 (3x3 conv ->
    [max-pool] -> BatchNorm -> ReLU; a residual block is two of them plus the identity); global max pool, FC 128
    'features', FC 'logits'. About 50 MMAC per 32x32 image."""
    init = keras.initializers.HeNormal(seed=seed)

    def conv(x, filters, pool=False):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init)(x)
        if pool:
            x = keras.layers.MaxPooling2D()(x)
        return keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))

    inputs = keras.Input(tuple(image_shape), name="images")
    x = conv(inputs, widths[0])
    x = conv(x, widths[1], pool=True)
    x = keras.layers.Add()([x, conv(conv(x, widths[1]), widths[1])])
    x = conv(x, widths[2], pool=True)
    x = conv(x, widths[3], pool=True)
    x = keras.layers.Add()([x, conv(conv(x, widths[3]), widths[3])])
    x = keras.layers.GlobalMaxPooling2D()(x)
    x = keras.layers.Dense(128, activation="relu", kernel_initializer=init, name="features")(x)
    logits = keras.layers.Dense(width, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                                name="logits")(x)
    return keras.Model(inputs, logits, name="independent_judge")


def build_judge(architecture: str, image_shape, width: int, seed: int = 0) -> keras.Model:
    if architecture == "mnist_cnn":
        return build_mnist_cnn(image_shape, width, seed)
    if architecture == "resnet9":
        return build_resnet9(image_shape, width, seed)
    return build_resnet(image_shape, width, seed)


def resolve(source: ArraySource, code: CodeSpec, config: JudgeConfig = JudgeConfig()) -> Tuple[str, str]:
    """(recipe, architecture) that `config` means for `code`'s judge on `source` ('auto' resolved: see the module
    docstring)."""
    recipe = config.recipe
    if recipe == "auto":
        column = source.column(code.label) if code.label in source.train_labels else None
        names = column.class_names if column is not None else ()
        known = (int(np.count_nonzero(known_rows(source.train_labels[code.label], code.kind)))
                 if column is not None else 0)
        natural = code.kind == "categorical" and bool(names) and not all(str(n).isdigit() for n in names)
        recipe = "train_split" if (natural and tuple(source.image_shape) == (32, 32, 3)
                                   and known >= TRAIN_SPLIT_MIN_IMAGES
                                   and source.test_images is not source.train_images) else "paper"
    arch = config.architecture
    if arch == "auto":
        arch = "resnet9" if recipe == "train_split" else choose_architecture(source.image_shape)
    return recipe, arch


def _fingerprint(source: ArraySource, recipe: str) -> str:
    """The cache key's data digest: the test split (`data_fingerprint`), and for 'train_split' the train split
    too (what that judge learns from)."""
    digest = data_fingerprint(source)
    if recipe != "train_split":
        return digest
    h = hashlib.sha1(digest.encode())
    h.update(np.ascontiguousarray(source.train_images).tobytes())
    for k in sorted(source.train_labels):
        h.update(k.encode())
        h.update(np.ascontiguousarray(source.train_labels[k]).tobytes())
    return h.hexdigest()[:12]


def data_fingerprint(source: ArraySource) -> str:
    """Short digest of a judge's training data (the test split), for the cache file name."""
    h = hashlib.sha1(source.test_images.tobytes())
    for k in sorted(source.test_labels):
        h.update(k.encode())
        h.update(np.ascontiguousarray(source.test_labels[k]).tobytes())
    return h.hexdigest()[:12]


def cache_dir() -> str:
    """Where judges are cached: `$TF_SSINFOGAN_CACHE`, by default `~/.cache/tf_ssinfogan`."""
    return os.environ.get("TF_SSINFOGAN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tf_ssinfogan"))


def judge_path(source: ArraySource, code: CodeSpec, architecture: str, config: JudgeConfig = JudgeConfig()) -> str:
    """The cache file of the judge for `code`'s label column and training recipe (the MNIST digit judge of the
    default recipe keeps its old name). With `config.architecture` 'auto', the architecture is the one the
    recipe resolves to (`resolve`)."""
    recipe, resolved = resolve(source, code, config)
    if config.architecture == "auto":
        architecture = resolved
    tag = config.tag(architecture, recipe)
    if kind_of(code).enumerable and architecture == "mnist_cnn" and recipe == "paper":
        return os.path.join(cache_dir(), "classifiers", f"{os.path.splitext(source.name)[0]}_{code.label}_"
                            f"{data_fingerprint(source)}{tag}.keras")
    return os.path.join(cache_dir(), "classifiers", f"{os.path.splitext(source.name)[0]}_{code.label}_"
                        f"{code.kind}{code.dim}_{architecture}_{_fingerprint(source, recipe)}{tag}.keras")


def _split(source: ArraySource, code: CodeSpec, split: str) -> Tuple[np.ndarray, np.ndarray]:
    images = source.test_images if split == "test" else source.train_images
    labels = (source.test_labels if split == "test" else source.train_labels).get(code.label)
    if labels is None:
        raise JudgeUnavailable(f"{source.name!r} has no label column {code.label!r} in its {split} split")
    keep = known_rows(labels, code.kind)
    return images[keep], np.asarray(labels)[keep]


def _augment(images, step, seed: int):
    """A judge's training batch, each image shifted by up to 2 pixels per axis and rotated by up to 10 degrees
    (zeros fill the border)."""
    angles, shifts = random_affine_params(tf.shape(images)[0], tf.stack([tf.cast(step, tf.int32), seed]), 10.0, 2.0)
    return affine_images(images, angles, shifts, fill_mode="CONSTANT")


def _predict(model, images_uint8, batch_size: int = 500) -> np.ndarray:
    return model.predict(tf.cast(images_uint8, tf.float32) / 255.0, batch_size=batch_size, verbose=0)


def _crop_flip(images, step, seed: int):
    """A training batch (uint8), each image shifted by up to 4 pixels per axis (reflected border: a random
    crop of the padded image) and mirrored left-right with probability 1/2; a stateless draw per batch."""
    s = tf.stack([tf.cast(step, tf.int32), seed])
    images = random_shift(images, 4, s)
    flip = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], s + [0, 1 << 20]) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def _start(source: ArraySource, code: CodeSpec, config: JudgeConfig, split: str, architecture: str, need: str):
    """(images, labels, untrained judge) for training on `split`'s known labels; JudgeUnavailable (saying `need`)
    when there are fewer than 2."""
    x_fit, y_fit = _split(source, code, split)
    if len(x_fit) < 2:
        raise JudgeUnavailable(f"label {code.label!r} of {source.name!r} has {len(x_fit)} known value(s) in the "
                               f"{split} split ({need})")
    keras.utils.set_random_seed(config.seed)
    return x_fit, y_fit, build_judge(architecture, source.image_shape, code.dim, config.seed)


def train_judge_on_train_split(source: ArraySource, code: CodeSpec, config: JudgeConfig = JudgeConfig(),
                               verbose: int = 0, architecture: str = "resnet9"):
    """The 'train_split' recipe for a categorical code: trains on the train split's known labels (random crops and
    flips, SGD with Nesterov momentum 0.9, weight decay 5e-4, learning rate warmed up linearly to 0.1 over the
    first epoch and cosine-decayed to 0, label smoothing 0.1, batch `config.batch_size`), measures accuracy on the
    test split. Returns (model, meta)."""
    if code.kind != "categorical":
        raise ConfigError(f"the 'train_split' judge recipe is for categorical codes; {code.name!r} is {code.kind}")
    epochs = config.epochs or JUDGE_DEFAULT_EPOCHS.get(architecture, 12)
    x_fit, y_fit, model = _start(source, code, config, "train", architecture,
                                 "the 'train_split' recipe trains on it and needs at least 2")
    batch = min(config.batch_size, len(x_fit))
    steps = len(x_fit) // batch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(steps * (epochs - 1), 1), warmup_target=0.1, warmup_steps=steps)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=5e-4),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    fit = tf.data.Dataset.from_tensor_slices((x_fit, np.asarray(y_fit, np.int64).reshape(-1))).shuffle(
        len(x_fit), seed=config.seed, reshuffle_each_iteration=True).batch(batch, drop_remainder=True).repeat(
        epochs).enumerate().map(lambda i, xy: (tf.cast(_crop_flip(xy[0], i, config.seed), tf.float32) / 255.0,
                                               tf.one_hot(xy[1], code.dim)), num_parallel_calls=2).prefetch(2)
    model.fit(fit, epochs=epochs, steps_per_epoch=steps, verbose=verbose, shuffle=False)
    x_val, y_val = _split(source, code, "test")
    kind = scorers.KINDS[code.kind]
    held_out = kind.judge_held_out(_predict(model, x_val), y_val, code) if len(x_val) else {}
    meta = {"label": code.label, "kind": code.kind, "dim": code.dim, "architecture": architecture, "epochs": epochs,
            "augment": False, "recipe": "train_split", "recipe_text": RECIPE_TEXT["train_split"],
            "trained_on": "train split", "trained_examples": int(len(x_fit)),
            "held_out_split": "test", "held_out_examples": int(len(x_val)), "held_out": held_out,
            "source": source.name, "fingerprint": _fingerprint(source, "train_split")}
    return model, meta


def train_judge(source: ArraySource, code: CodeSpec, config: JudgeConfig = JudgeConfig(), verbose: int = 0):
    """Trains the judge for `code`'s label column by its recipe (`resolve`): by the paper's, on the test split,
    measured on the train split; by 'train_split', `train_judge_on_train_split`. Returns (model, meta). Raises
    JudgeUnavailable when the training split has no known labels for it."""
    config.validate()
    recipe, arch = resolve(source, code, config)
    if recipe == "train_split":
        return train_judge_on_train_split(source, code, config, verbose, arch)
    kind = scorers.KINDS[code.kind]
    epochs = config.epochs or JUDGE_DEFAULT_EPOCHS[arch]
    x_fit, y_fit, model = _start(source, code, config, "test", arch,
                                 "a judge trains on the test split and needs at least 2")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=kind.judge_loss())
    fit = tf.data.Dataset.from_tensor_slices((x_fit, kind.judge_targets(y_fit, code))).shuffle(
        len(x_fit), seed=config.seed).batch(config.batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
    if config.augment:  # a fresh stateless draw per batch: (seed, batch number over all epochs)
        steps = -(-len(x_fit) // config.batch_size)
        fit = fit.repeat(epochs).enumerate().map(lambda i, xy: (_augment(xy[0], i, config.seed), xy[1]))
        model.fit(fit, epochs=epochs, steps_per_epoch=steps, verbose=verbose, shuffle=False)
    else:  # the dataset is shuffled above (seeded); fit's shuffle=True would only warn that it ignores it
        model.fit(fit, epochs=epochs, verbose=verbose, shuffle=False)
    x_val, y_val = _split(source, code, "train")
    held_out = kind.judge_held_out(_predict(model, x_val), y_val, code) if len(x_val) else {}
    meta = {"label": code.label, "kind": code.kind, "dim": code.dim, "architecture": arch, "epochs": epochs,
            "augment": bool(config.augment), "recipe": "paper", "recipe_text": RECIPE_TEXT["paper"],
            "trained_on": "test split", "trained_examples": int(len(x_fit)),
            "held_out_split": "train", "held_out_examples": int(len(x_val)), "held_out": held_out,
            "source": source.name, "fingerprint": data_fingerprint(source)}
    if kind_of(code).enumerable:
        meta["validation_accuracy_on_train_split"] = held_out.get("value", float("nan"))
    return model, meta


def save_judge(model, path: str, meta: dict) -> str:
    """Saves a judge (.keras) and its metadata (.json) atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp_{os.getpid()}_{os.path.basename(path)}")
    model.save(tmp)
    os.replace(tmp, path)
    write_text_atomic(path + ".json", json.dumps(meta, indent=2) + "\n")
    return path


def load_judge(path: str):
    """Loads a cached judge (Keras safe_mode: no arbitrary code) and its metadata."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"judge {path!r} does not exist; train it with "
                                f"`python -m tf_ssinfogan.train_classifier`")
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    meta_path = path + ".json"
    meta = {}
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    return model, meta


def get_judge(source: ArraySource, code: CodeSpec, config: JudgeConfig = JudgeConfig(), path: str = "") -> Judge:
    """The cached judge for `code`'s label column, trained and cached on first use."""
    arch = resolve(source, code, config)[1]
    path = path or judge_path(source, code, arch, config)
    if os.path.isfile(path):
        model, meta = load_judge(path)
        if "held_out" not in meta and "validation_accuracy_on_train_split" in meta:  # cached by an older version
            meta["held_out"] = {"metric": "accuracy", "value": meta["validation_accuracy_on_train_split"]}
            # (that version trained the MNIST classifier the same way: on the test split, measured on the train
            # split's known labels)
            meta.setdefault("architecture", arch)
            meta.setdefault("held_out_split", "train")
            known = known_rows(source.train_labels.get(code.label, np.zeros([0])), code.kind)
            meta.setdefault("held_out_examples", int(np.count_nonzero(known)))
        return Judge(model, meta, path)
    model, meta = train_judge(source, code, config)
    save_judge(model, path, meta)
    return Judge(model, meta, path)


def judges_for(codes, source: ArraySource, config: JudgeConfig = JudgeConfig()) -> Dict[str, object]:
    """One judge per distinct (label column, kind, dim) of the semi-supervised codes, keyed by code name; a
    code whose judge cannot exist maps to its JudgeUnavailable. `config.classifier_path` overrides the file of
    the first categorical code's judge (the paper's classifier)."""
    out, by_key = {}, {}
    first_cat = next((c.name for c in codes if c.semi_supervised and kind_of(c).enumerable), None)
    for code in codes:
        if not code.semi_supervised:
            continue
        key = (code.label, code.kind, code.dim)
        if key not in by_key:
            try:
                by_key[key] = get_judge(source, code, config, config.classifier_path if code.name == first_cat else "")
            except JudgeUnavailable as e:
                by_key[key] = e
        out[code.name] = by_key[key]
    return out


def label_judge(source: ArraySource, config: JudgeConfig = JudgeConfig(), path: str = "") -> Optional[Judge]:
    """The judge of a categorical 'label' column (for unsupervised categorical codes when no semi-supervised
    categorical code has one), or None when the data has no such column with known test labels."""
    if "label" not in source.test_labels or source.column("label").kind != "categorical":
        return None
    known = np.asarray(source.test_labels["label"])
    known = known[known >= 0]
    if known.size < 2:
        return None
    num = source.column("label").num_classes or \
        int(max(known.max(), np.asarray(source.train_labels["label"]).max())) + 1
    try:
        return get_judge(source, CodeSpec("label", "categorical", max(num, 2), "label"), config, path)
    except JudgeUnavailable:
        return None


def category_judge(codes, found: Dict[str, object], source: ArraySource, config: JudgeConfig = JudgeConfig()):
    """The categorical judge that unsupervised categorical codes are mapped onto (Hungarian): the first
    semi-supervised categorical code's, else the 'label' column's (trained only when such a code exists)."""
    for c in codes:
        if c.semi_supervised and kind_of(c).enumerable and isinstance(found.get(c.name), Judge):
            return found[c.name]
    if any(not c.semi_supervised and kind_of(c).enumerable for c in codes):
        return label_judge(source, config)
    return None


def classifier_target(latent_config):
    """(label column, classes) that the independent classifier of the final evaluation judges: those of the
    first categorical code tied to a label, else None."""
    code = next((c for c in latent_config.codes if kind_of(c).enumerable and c.label is not None), None)
    return (code.label, code.dim) if code is not None else None
