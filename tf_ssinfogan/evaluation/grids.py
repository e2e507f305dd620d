"""G's images in batches, and fixed-latent image grids: one per code (rows: categorical value; columns: a sweep or
fixed samples) and the class-conditioned grid of a run (samples_by_class.png)."""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from tf_ssinfogan.model.images import float_to_uint8
from tf_ssinfogan.rundir.fileio import write_bytes_atomic
from tf_ssinfogan.model.latents import LatentSpace, first_enumerable, kind_of


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """[rows*cols, H, W, C] uint8 -> one [rows*(H+pad)+pad, cols*(W+pad)+pad, C] uint8 image."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"make_grid: {n} images do not fill {rows}x{cols}")
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return grid


def write_png(path: str, image: np.ndarray) -> str:
    """Writes an HxWxC uint8 image as PNG atomically (temporary name, then rename)."""
    return write_bytes_atomic(path, tf.io.encode_png(tf.convert_to_tensor(image, tf.uint8)).numpy())


def traversal_latents(space: LatentSpace, code_name: str, dim: int = 0, cols: int = 10,
                      seed: Tuple[int, int] = (0, 1)) -> Tuple[Dict[str, tf.Tensor], int, int]:
    """Latents for one grid of `code_name`, row-major; returns (latents, rows, cols).

    Categorical code: rows are its k values, columns are fixed samples of everything else.
    Continuous / binary code: rows are the values of the first other categorical code (or fixed samples),
    columns sweep dimension `dim` of the code from its low to its high value; the rest stays fixed per row.
    """
    code = space.code(code_name)
    kind = kind_of(code)
    if kind.enumerable:
        rows = code.dim
        base = space.sample(cols, tf.constant(seed))
        lat = {k: tf.tile(v, [rows, 1]) for k, v in base.items()}
        lat[code.name] = tf.repeat(tf.eye(code.dim), cols, axis=0)
        return lat, rows, cols
    row_code = first_enumerable(space.codes, exclude=code.name)
    rows = row_code.dim if row_code is not None else 10
    base = space.sample(rows, tf.constant(seed))
    if row_code is not None:
        base[row_code.name] = tf.eye(rows)
    lat = {k: tf.repeat(v, cols, axis=0) for k, v in base.items()}
    sweep = tf.tile(kind.sweep(code, cols), [rows])
    values = lat[code.name].numpy()
    values[:, dim] = sweep.numpy()
    lat[code.name] = tf.constant(values)
    return lat, rows, cols


def grid_specs(space: LatentSpace) -> List[Tuple[str, str, int]]:
    """(file tag, code name, dim) for every grid: one per categorical code, one per other code dimension."""
    out = []
    for c in space.codes:
        if kind_of(c).traversal_dims(c) == 1:
            out.append((c.name, c.name, 0))
        else:
            out.extend((f"{c.name}_{d}", c.name, d) for d in range(c.dim))
    return out


def class_conditioned_latents(space: LatentSpace, code_name: str, per_class: int,
                              seed: Tuple[int, int] = (0, 2)) -> Dict[str, tf.Tensor]:
    """k * per_class latents, row i fixing categorical code `code_name` to value i, the rest random."""
    code = space.code(code_name)
    lat = space.sample(code.dim * per_class, tf.constant(seed))
    lat[code.name] = tf.repeat(tf.eye(code.dim), per_class, axis=0)
    return lat


def write_code_grids(model, out_dir: str, step: int, writer=None, cols: int = 10):
    """Writes one fixed-latent grid PNG per code (and to TensorBoard if a writer is given); returns paths."""
    paths = []
    space = model.latent_space
    data_range = model.network_config.data_range
    for tag, code_name, dim in grid_specs(space):
        latents, rows, cols_ = traversal_latents(space, code_name, dim, cols)
        images = float_to_uint8(model.generate(latents), data_range).numpy()
        grid = make_grid(images, rows, cols_)
        paths.append(write_png(os.path.join(out_dir, f"grid_{tag}_{step:06d}.png"), grid))
        if writer is not None:
            with writer.as_default(step=step):
                tf.summary.image(f"Grids/{tag}", grid[None], step=step)
    return paths


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


def class_conditioned_grid(model, path: str, per_class: int = 10) -> str:
    """Rows: the values of the first categorical semi-supervised code (else any categorical code)."""
    code = first_enumerable(model.ss_codes) or first_enumerable(model.latent_config.codes)
    if code is None:
        return ""
    latents = class_conditioned_latents(model.latent_space, code.name, per_class)
    images = float_to_uint8(model.generate(latents), model.network_config.data_range).numpy()
    return write_png(path, make_grid(images, code.dim, per_class))
