"""Pixel conversions between stored uint8 images and the float data range the networks use."""

from __future__ import annotations

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
