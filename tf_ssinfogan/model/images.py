"""Pixel conversions between stored uint8 images and the float data range the networks use."""

from __future__ import annotations

import math
from typing import Tuple

import tensorflow as tf


def images_to_float(images, data_range: Tuple[float, float]):
    """uint8 [0, 255] -> float32 in `data_range` ([0, 1] or [-1, 1])."""
    lo, hi = data_range
    return tf.cast(images, tf.float32) / 255.0 * (hi - lo) + lo


def float_to_uint8(images, data_range: Tuple[float, float]):
    lo, hi = data_range
    x = (tf.cast(images, tf.float32) - lo) / (hi - lo)
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def random_shift(images, max_shift: int, seed):
    """Each image translated by its own random (dy, dx) in [-max_shift, max_shift]^2 (`shift_images`); a
    stateless draw from `seed` (shape [2] int), so a step's augmentation is a function of its seed. `images`
    [B, H, W, C] of any dtype; 0 = unchanged."""
    if max_shift <= 0:
        return images
    offsets = tf.random.stateless_uniform([tf.shape(images)[0], 2], seed, minval=0, maxval=2 * int(max_shift) + 1,
                                          dtype=tf.int32)
    return shift_images(images, offsets, max_shift)


def random_flip(images, seed):
    """Each image mirrored left-right with probability 1/2 (a stateless draw from `seed`, shape [2] int), the
    augmentation of natural photos (CIFAR-10); `images` [B, H, W, C] of any dtype."""
    return flip_images(images, random_flips(tf.shape(images)[0], seed))


def random_flips(n, seed):
    """[n] bool, each True with probability 1/2: which images `flip_images` mirrors (a stateless draw)."""
    return tf.random.stateless_uniform([n], seed) < 0.5


def flip_images(images, flips):
    """images [B, H, W, C] with those where flips [B] is True mirrored left-right."""
    return tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)


def shift_images(images, offsets, max_shift: int):
    """images [B, H, W, C] translated by offsets [B, 2] - max_shift (offsets in [0, 2 * max_shift]), the border
    filled by reflection (MNIST's black margin stays black)."""
    s = int(max_shift)
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [s, s], [s, s], [0, 0]], mode="REFLECT")
    rows = offsets[:, :1] + tf.range(h)[None, :]  # [B, H]
    cols = offsets[:, 1:] + tf.range(w)[None, :]  # [B, W]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)  # [B, H, W + 2s, C]
    return tf.gather(out, cols, axis=2, batch_dims=1)


def random_affine_params(n, seed, max_rotation: float, max_shift: float):
    """(angles [n] in radians, shifts [n, 2] in pixels), uniform in +-max_rotation degrees and +-max_shift pixels
    per axis; a stateless draw from `seed`, for `affine_images`."""
    u = tf.random.stateless_uniform([n, 3], seed, minval=-1.0, maxval=1.0)
    return u[:, 0] * (float(max_rotation) * math.pi / 180.0), u[:, 1:] * float(max_shift)


def affine_images(images, angles, shifts, fill_mode: str = "REFLECT"):
    """images [B, H, W, C] (float) each rotated about its centre by angles [B] (radians) and translated by
    shifts [B, 2] (dy, dx pixels, fractional allowed), bilinear, the border filled by `fill_mode`."""
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    cy = (tf.cast(shape[1], tf.float32) - 1.0) / 2.0
    cx = (tf.cast(shape[2], tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angles), tf.sin(angles)
    ty, tx = shifts[:, 0], shifts[:, 1]
    # the transform maps each output pixel to the input pixel it reads: p_in = R^T (p_out - c - t) + c
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = cx - (a0 * (cx + tx) + a1 * (cy + ty))
    b2 = cy - (b0 * (cx + tx) + b1 * (cy + ty))
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32), transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode)
    return tf.cast(out, images.dtype)
