"""Data: sources (npz arrays, TFDS by name), the labelled subset, and the step-indexed tf.data pipeline.

The training stream is a pure function of the step index t (and seeds), which makes resuming exact: the
pipeline restarts at the restored step and produces the same batches an uninterrupted run would have.

At step t a labelled batch is drawn with probability p(t) (reference annealing):
    p(t) = max(anneal_start - anneal_decrement * floor(t / anneal_every), n_labelled / n_train)
Labelled batches come from the labelled subset, unlabelled batches from all training images (their labels
are hidden: zeros, mask 0). Each stream walks through a fresh seeded permutation per epoch. Elements are
`(images float32 [B,H,W,C] in the data range, {label_key: [B] or [B, d]}, label_mask float32 [B])`.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tf_ssinfogan.config import CodeSpec, ConfigError, DataConfig, LatentConfig

DEFAULT_NPZ = os.path.join(os.path.dirname(__file__), "data_files", "mnist.npz")


class DataError(ValueError):
    """The data does not match what the run needs; the message names the file, key or value."""


@dataclasses.dataclass
class ArraySource:
    """In-memory images (uint8 NHWC) and label columns for the train and test splits."""

    name: str
    train_images: np.ndarray
    train_labels: Dict[str, np.ndarray]
    test_images: np.ndarray
    test_labels: Dict[str, np.ndarray]

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


def _as_nhwc_uint8(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must have shape [N, H, W] or [N, H, W, C], got {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no images")
    if x.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 in [0, 255], got dtype {x.dtype}")
    return x


def load_npz(path: str) -> ArraySource:
    """Loads x_train, y_train, x_test, y_test (uint8 images, integer labels) from an .npz file.

    Never unpickles (allow_pickle=False). Raises DataError naming the file and the problem.
    """
    path = path or DEFAULT_NPZ
    if not os.path.isfile(path):
        raise DataError(f"npz file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise DataError(f"npz file {path!r} lacks the arrays {missing} (has {sorted(f.files)})")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"npz file {path!r} is corrupt or not an npz archive: {e}") from None
    splits = {}
    for split in ("train", "test"):
        x = _as_nhwc_uint8(arrays[f"x_{split}"], f"{path}:x_{split}")
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"{path}:y_{split} must be a vector with one label per image ({x.shape[0]}), got shape {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}:y_{split} must hold integer labels, got dtype {y.dtype}")
        splits[split] = (x, {"label": y.astype(np.int64)})
    return ArraySource(os.path.basename(path), splits["train"][0], splits["train"][1],
                       splits["test"][0], splits["test"][1])


def load_tfds(name: str, data_dir: Optional[str] = None, download: bool = True,
              train_split: str = "train", test_split: str = "test") -> ArraySource:
    """Loads a TFDS image dataset with an integer 'label' feature into memory."""
    import tensorflow_datasets as tfds  # heavy; only for this source

    out = {}
    for split in (train_split, test_split):
        try:
            ds = tfds.load(name, split=split, data_dir=data_dir, download=download)
        except Exception as e:  # TFDS raises many types; re-raise with the dataset named
            raise DataError(f"TFDS dataset {name!r} split {split!r} could not be loaded: {e}") from e
        batch = tfds.as_numpy(ds.batch(1 << 30))
        feats = next(iter(batch), None)
        if feats is None:
            raise DataError(f"TFDS dataset {name!r} split {split!r} is empty")
        if "image" not in feats:
            raise DataError(f"TFDS dataset {name!r} has no 'image' feature (has {sorted(feats)})")
        images = _as_nhwc_uint8(np.asarray(feats["image"]), f"tfds:{name}:{split}")
        labels = {k: np.asarray(v).astype(np.int64) for k, v in feats.items()
                  if k != "image" and np.asarray(v).ndim == 1 and np.issubdtype(np.asarray(v).dtype, np.integer)}
        out[split] = (images, labels)
    return ArraySource(name, out[train_split][0], out[train_split][1], out[test_split][0], out[test_split][1])


def load_source(config: DataConfig) -> ArraySource:
    if config.source == "npz":
        return load_npz(config.npz_path)
    return load_tfds(config.tfds_name, config.tfds_data_dir, config.tfds_download,
                     config.train_split, config.test_split)


def check_source_matches(source: ArraySource, latent: LatentConfig, image_shape) -> None:
    """Rejects a code spec or network shape that does not fit the data, naming both sides."""
    if tuple(source.image_shape) != tuple(image_shape):
        raise ConfigError(
            f"the network expects images of shape {tuple(image_shape)} but {source.name!r} has {source.image_shape}"
        )
    for code in latent.semi_supervised_codes:
        if code.label not in source.train_labels:
            raise ConfigError(
                f"code {code.name!r} is tied to label {code.label!r}, but {source.name!r} has labels "
                f"{sorted(source.train_labels)}"
            )
        y = source.train_labels[code.label]
        if code.kind == "categorical":
            known = y[y >= 0]
            if known.size and (known.max() >= code.dim):
                raise ConfigError(
                    f"code {code.name!r} has {code.dim} categories, but label {code.label!r} of {source.name!r} "
                    f"has values up to {int(known.max())}"
                )


def select_labelled(labels: np.ndarray, config: DataConfig, num_classes: Optional[int] = None) -> np.ndarray:
    """Indices of the labelled subset, chosen by `config.label_seed` (sorted).

    Entries whose label is negative are unlabelled and never chosen. `labelled_count` wins over
    `labelled_fraction`; 'balanced' takes the same number per class (the remainder to the first classes).
    """
    candidates = np.flatnonzero(labels >= 0)
    n = config.labelled_count if config.labelled_count is not None else int(round(config.labelled_fraction * len(labels)))
    if n > len(candidates):
        raise ConfigError(f"asked for {n} labelled examples but only {len(candidates)} have labels")
    rng = np.random.RandomState(config.label_seed)
    if n == 0:
        return np.zeros([0], np.int64)
    if config.labelled_selection == "random":
        return np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64)
    classes = np.unique(labels[candidates]) if num_classes is None else np.arange(num_classes)
    per_class, rest = divmod(n, len(classes))
    chosen = []
    for i, c in enumerate(classes):
        pool = candidates[labels[candidates] == c]
        k = per_class + (1 if i < rest else 0)
        if k > len(pool):
            raise ConfigError(f"balanced selection needs {k} examples of class {c} but there are {len(pool)}")
        chosen.append(rng.choice(pool, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def labelled_probability(step, config: DataConfig, labelled_ratio: float):
    """p(t): probability that step t draws a labelled batch (reference annealing). Works on ints or tensors."""
    if labelled_ratio <= 0:
        return tf.zeros_like(tf.cast(step, tf.float32))
    t = tf.cast(step, tf.float32)
    p = config.anneal_start - config.anneal_decrement * tf.floor(t / float(config.anneal_every))
    return tf.clip_by_value(p, labelled_ratio, 1.0)


def images_to_float(images, data_range: Tuple[float, float]):
    """uint8 [0, 255] -> float32 in `data_range` ([0, 1] or [-1, 1])."""
    lo, hi = data_range
    return tf.cast(images, tf.float32) / 255.0 * (hi - lo) + lo


def float_to_uint8(images, data_range: Tuple[float, float]):
    lo, hi = data_range
    x = (tf.cast(images, tf.float32) - lo) / (hi - lo)
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def _label_targets(labels: Dict[str, np.ndarray], codes, idx) -> Dict[str, np.ndarray]:
    out = {}
    for code in codes:
        y = labels[code.label][idx]
        out[code.label] = y.astype(np.int64) if code.kind == "categorical" else y.astype(np.float32).reshape(len(idx), -1)
    return out


class TrainStream:
    """The step-indexed training stream for one source and config."""

    def __init__(self, source: ArraySource, latent: LatentConfig, data: DataConfig,
                 global_batch_size: int, data_range: Tuple[float, float]):
        self.source, self.latent, self.config = source, latent, data
        self.global_batch_size = global_batch_size
        self.data_range = data_range
        ss = latent.semi_supervised_codes
        num_classes = next((c.dim for c in ss if c.kind == "categorical"), None)
        if ss:
            key = ss[0].label
            self.labelled_idx = select_labelled(source.train_labels[key], data, num_classes)
        else:
            self.labelled_idx = np.zeros([0], np.int64)
        self.num_train = len(source.train_images)
        self.num_labelled = len(self.labelled_idx)
        self.labelled_ratio = self.num_labelled / self.num_train
        self.labelled_targets = _label_targets(source.train_labels, ss, self.labelled_idx)

    def probability(self, step):
        return labelled_probability(step, self.config, self.labelled_ratio)

    @staticmethod
    def _positions(step, n, size, start, global_batch, seed):
        """Indices into a stream of n items for the slice [start, start+size) of global batch `step`."""
        pos = step * global_batch + start + tf.range(size, dtype=tf.int64)
        epoch, offset = pos // n, pos % n
        first = epoch[0]

        def perm(e):
            return tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]))

        # a slice spans at most two epochs because size <= n
        perms = tf.stack([perm(first), perm(first + 1)])
        return tf.gather_nd(perms, tf.stack([epoch - first, offset], axis=1))

    def batch_for_step(self, step, size, start):
        """The slice [start, start+size) of the global batch of step `step` (a scalar int64 tensor)."""
        gb, n_lab, n_all = self.global_batch_size, self.num_labelled, self.num_train
        seed = self.config.shuffle_seed
        step = tf.cast(step, tf.int64)
        if n_lab:
            u = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed + 7919, tf.int64), step]))
            use_lab = u < self.probability(step)
            lab_pos = self._positions(step, n_lab, size, start, gb, seed + 1)
            idx = tf.where(use_lab, tf.gather(self._lab_idx, lab_pos),
                           self._positions(step, n_all, size, start, gb, seed))
            labels = {k: tf.where(use_lab, tf.gather(v, lab_pos), tf.zeros_like(tf.gather(v, lab_pos)))
                      for k, v in self._lab_targets.items()}
            mask = tf.fill([size], tf.cast(use_lab, tf.float32))
        else:
            idx = self._positions(step, n_all, size, start, gb, seed)
            labels = {k: tf.zeros(tf.concat([[size], tf.shape(v)[1:]], 0), v.dtype)
                      for k, v in self._lab_targets.items()}
            mask = tf.zeros([size], tf.float32)
        return images_to_float(tf.gather(self._images, idx), self.data_range), labels, mask

    def dataset(self, start_step: int = 0, end_step: Optional[int] = None, num_replicas: int = 1,
                first_replica: int = 0, local_replicas: int = 1) -> tf.data.Dataset:
        """Per-replica batches for steps [start_step, end_step) (endless if end_step is None).

        Element j holds replica `first_replica + j % local_replicas`'s slice of step `start_step +
        j // local_replicas`: the order in which a strategy hands consecutive elements to its local replicas.
        """
        gb = self.global_batch_size
        if gb % num_replicas:
            raise ConfigError(f"global batch size {gb} is not divisible by the {num_replicas} replicas")
        size = gb // num_replicas
        if size > self.num_train:
            raise ConfigError(f"batch size {size} exceeds the {self.num_train} training images")
        if not hasattr(self, "_images"):
            self._images = tf.constant(self.source.train_images)
            self._lab_idx = tf.constant(self.labelled_idx)
            self._lab_targets = {k: tf.constant(v) for k, v in self.labelled_targets.items()}

        def make(j):
            step = start_step + j // local_replicas
            replica = first_replica + j % local_replicas
            return self.batch_for_step(step, size, replica * size)

        count = (end_step - start_step) * local_replicas if end_step is not None else 1 << 62
        ds = tf.data.Dataset.range(count).map(make, num_parallel_calls=2, deterministic=True).prefetch(2)
        return ds.with_options(pipeline_options())

    def distributed_dataset(self, strategy: tf.distribute.Strategy, start_step: int = 0,
                            end_step: Optional[int] = None):
        """`strategy.distribute_datasets_from_function` over this stream: each replica gets its slice."""

        def fn(ctx: tf.distribute.InputContext):
            local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            return self.dataset(start_step, end_step, ctx.num_replicas_in_sync,
                                ctx.input_pipeline_id * local, local)

        return strategy.distribute_datasets_from_function(fn)


def pipeline_options() -> tf.data.Options:
    """Autotune off: with it on, the end of `fit` can stall 9-60 s waiting for the autotune thread."""
    opts = tf.data.Options()
    opts.autotune.enabled = False
    opts.deterministic = True
    return opts


def test_dataset(source: ArraySource, batch_size: int, data_range) -> tf.data.Dataset:
    """Real test images (float, data range) with their label columns, in order."""
    ds = tf.data.Dataset.from_tensor_slices((source.test_images, source.test_labels))
    ds = ds.batch(batch_size).map(lambda x, y: (images_to_float(x, data_range), y))
    return ds.with_options(pipeline_options())
