"""The step-indexed training stream: the labelled subset, the labelled-draw schedule and the tf.data pipeline.

The training stream is a pure function of the step index t (and seeds), which makes resuming exact: the
pipeline restarts at the restored step and produces the same batches an uninterrupted run would have.

At step t a labelled batch is drawn with probability p(t) (reference annealing):
    p(t) = max(anneal_start - anneal_decrement * floor(t / anneal_every), n_labelled / n_train)
Labelled batches come from the labelled subset, unlabelled batches from all training images (their labels
are hidden: zeros, mask 0). With `labelled_per_batch` = k > 0 instead, every global batch holds k labelled
images (its first k) and B - k unlabelled ones (the mask is per image). `labelled_shift` translates the
labelled images at random, `labelled_rotation` also rotates them, `labelled_flip` mirrors half of them
(augmentation; a stateless draw per step, so resuming stays exact). Each stream walks through a fresh seeded
permutation per epoch. Elements are
`(images float32 [B,H,W,C] in the data range, {label_key: [B] or [B, d]}, label_mask float32 [B])`.
The images and label columns come from a `sources.ArraySource`.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tf_ssinfogan.config import ConfigError, DataConfig, LatentConfig
from tf_ssinfogan.model.images import affine_images, images_to_float, random_affine_params, random_flip, random_shift
from tf_ssinfogan.model.latents import kind_of
from tf_ssinfogan.data.sources import ArraySource, labelled_candidates


def select_labelled(labels: np.ndarray, config: DataConfig, num_classes: Optional[int] = None,
                    known: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the labelled subset, chosen by `config.label_seed` (sorted).

    Entries whose label is negative (or where `known` is False) are unlabelled and never chosen.
    `labelled_count` wins over `labelled_fraction` (a fraction of all of `labels`); a fraction of 1.0 takes
    every labelled entry. 'random' (reference) draws uniformly; 'balanced' takes the same number per class of
    `labels` (the remainder to the first classes).
    """
    labels = np.asarray(labels)
    if known is None:
        known = labels >= 0
    candidates = np.flatnonzero(known)
    if config.labelled_count is not None:
        n = config.labelled_count
    elif config.labelled_fraction >= 1.0:
        n = len(candidates)
    else:
        n = int(round(config.labelled_fraction * len(labels)))
    if n > len(candidates):
        raise ConfigError(f"asked for {n} labelled examples but only {len(candidates)} have labels")
    rng = np.random.RandomState(config.label_seed)
    if n == 0:
        return np.zeros([0], np.int64)
    if config.labelled_selection == "random":
        return np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64)
    if labels.ndim != 1 or np.issubdtype(labels.dtype, np.floating):
        raise ConfigError("balanced selection needs a categorical or binary first semi-supervised code "
                          f"(one class per example), got labels of shape {labels.shape} and dtype {labels.dtype}")
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
    """p(t): probability that step t draws a labelled batch (reference annealing, floored at the labelled ratio or
    at `anneal_floor` when that is higher). Works on ints or tensors."""
    if labelled_ratio <= 0:
        return tf.zeros_like(tf.cast(step, tf.float32))
    t = tf.cast(step, tf.float32)
    p = config.anneal_start - config.anneal_decrement * tf.floor(t / float(config.anneal_every))
    return tf.clip_by_value(p, max(labelled_ratio, config.anneal_floor), 1.0)


def _where_rows(rows, a, b):
    """a where rows[i] else b, row by row (`rows` [B] bool; a, b [B, ...])."""
    rows = tf.reshape(rows, tf.concat([tf.shape(rows), tf.ones([tf.rank(a) - 1], tf.int32)], 0))
    return tf.where(rows, a, b)


def _label_targets(labels: Dict[str, np.ndarray], codes, idx) -> Dict[str, np.ndarray]:
    out = {}
    for code in codes:
        y = labels[code.label][idx]
        out[code.label] = kind_of(code).stored_label(y)
    return out


class TrainStream:
    """The step-indexed training stream for one source and config."""

    def __init__(self, source: ArraySource, latent: LatentConfig, data: DataConfig,
                 global_batch_size: int, data_range: Tuple[float, float]):
        self.source, self.latent, self.config = source, latent, data
        self.global_batch_size = global_batch_size
        self.data_range = data_range
        ss = latent.semi_supervised_codes
        first = next((c for c in ss if kind_of(c).enumerable), None)
        num_classes = first.dim if first is not None else None
        if ss:
            key = ss[0].label
            self.labelled_idx = select_labelled(source.train_labels[key], data, num_classes,
                                                known=labelled_candidates(source, ss))
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

        # a slice spans at most size // n + 2 epochs (two when size <= n, e.g. a labelled subset smaller than
        # the batch spans several)
        perms = tf.stack([perm(first + k) for k in range(size // n + 2)])
        return tf.gather_nd(perms, tf.stack([epoch - first, offset], axis=1))

    def batch_for_step(self, step, size, start):
        """The slice [start, start+size) of the global batch of step `step` (a scalar int64 tensor)."""
        gb, n_lab, n_all = self.global_batch_size, self.num_labelled, self.num_train
        seed = self.config.shuffle_seed
        step = tf.cast(step, tf.int64)
        if n_lab:
            per_batch = self.config.labelled_per_batch
            if per_batch:  # the first `per_batch` images of every global batch are labelled
                labelled = tf.cast(start, tf.int64) + tf.range(size, dtype=tf.int64) < per_batch
                lab_pos = self._positions(step, n_lab, size, start, per_batch, seed + 1)
            else:  # the whole batch is labelled with probability p(t) (reference)
                u = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed + 7919, tf.int64), step]))
                labelled = tf.fill([size], u < self.probability(step))
                lab_pos = self._positions(step, n_lab, size, start, gb, seed + 1)
            idx = tf.where(labelled, tf.gather(self._lab_idx, lab_pos),
                           self._positions(step, n_all, size, start, gb, seed))
            labels = {k: _where_rows(labelled, tf.gather(v, lab_pos), tf.zeros_like(tf.gather(v, lab_pos)))
                      for k, v in self._lab_targets.items()}
            mask = tf.cast(labelled, tf.float32)
            images = images_to_float(tf.gather(self._images, idx), self.data_range)
            aug_seed = tf.stack([tf.constant(seed + 104729, tf.int64), step * gb + tf.cast(start, tf.int64)])
            if self.config.labelled_rotation:  # augmentation of the labelled images only: rotation and shift
                angles, shifts = random_affine_params(size, aug_seed, self.config.labelled_rotation,
                                                      self.config.labelled_shift + 0.5)
                turned = affine_images(images, angles, tf.round(shifts))
                images = _where_rows(labelled, turned, images)
            elif self.config.labelled_shift:  # augmentation of the labelled images only: integer shifts
                images = _where_rows(labelled, random_shift(images, self.config.labelled_shift, aug_seed), images)
            if self.config.labelled_flip:  # and mirroring, from its own draw
                images = _where_rows(labelled, random_flip(images, aug_seed + tf.constant([1, 0], tf.int64)), images)
            return images, labels, mask
        idx = self._positions(step, n_all, size, start, gb, seed)
        labels = {k: tf.zeros(tf.concat([[size], tf.shape(v)[1:]], 0), v.dtype) for k, v in self._lab_targets.items()}
        return images_to_float(tf.gather(self._images, idx), self.data_range), labels, tf.zeros([size], tf.float32)

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
