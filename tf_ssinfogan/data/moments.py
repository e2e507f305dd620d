"""Continuous labels measured from the pixels of grey digits: slant and stroke thickness.

The paper's second claim is that ss-InfoGAN exploits continuous supervision signals. On MNIST, two such signals
can be measured from any image, real or generated, with one deterministic formula, so that a sample's slant and
thickness are read without a learned judge (the approach of Morpho-MNIST, Castro et al. 2019, with simpler
estimators):

  * slant: the shear of the ink, -mu11 / mu02 from the intensity-weighted central image moments (x to the right,
    y downwards): 0 for an upright digit, positive when the top leans to the right. An image with (almost) no
    ink has slant 0.
  * thickness: the mean stroke width in pixels, area / (perimeter / 2), with area the number of ink pixels
    (intensity >= 128 of 255) and perimeter the number of ink/background pixel edges (4-neighbourhood, outside
    the image counting as background): a stroke of length L and width w has area L*w and perimeter about 2L.

`measure_digits` returns these raw values. `MomentScale` maps them to [-1, 1], the range of a continuous code's
U(-1, 1) prior, by their rank among the training images (the empirical CDF of the training split, linearly
interpolated, then 2 * F - 1): the label of a training image is uniform on [-1, 1] like the code. The same
scale, fitted once on the training split, maps the test labels and the measurements of samples.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

MEASURES = ("slant", "thickness")
INK_THRESHOLD = 128
_QUANTILES = 1001  # points of the stored empirical CDF


def _grey(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 4:
        if x.shape[-1] != 1:
            raise ValueError(f"slant and thickness are measured on grey images [N, H, W, 1]; got {x.shape}")
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"expected images [N, H, W] or [N, H, W, 1], got shape {x.shape}")
    if x.dtype != np.uint8:
        x = np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)
    return x


def slant(images: np.ndarray) -> np.ndarray:
    """-mu11 / mu02 of each image's intensity-weighted central moments ([N] float64; 0 without ink)."""
    x = _grey(images).astype(np.float64)
    n, h, w = x.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    mass = x.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    cx = (x * xs).sum(axis=(1, 2)) / safe
    cy = (x * ys).sum(axis=(1, 2)) / safe
    dx = xs[None] - cx[:, None, None]
    dy = ys[None] - cy[:, None, None]
    mu11 = (x * dx * dy).sum(axis=(1, 2)) / safe
    mu02 = (x * dy * dy).sum(axis=(1, 2)) / safe
    return np.where((mass > 0) & (mu02 > 1e-9), -mu11 / np.where(mu02 > 1e-9, mu02, 1.0), 0.0)


def thickness(images: np.ndarray) -> np.ndarray:
    """Mean stroke width in pixels: ink area / (ink perimeter / 2) ([N] float64; 0 without ink)."""
    ink = _grey(images) >= INK_THRESHOLD
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    edges = (padded[:, 1:, :] != padded[:, :-1, :]).sum(axis=(1, 2)) + \
        (padded[:, :, 1:] != padded[:, :, :-1]).sum(axis=(1, 2))
    return np.where(edges > 0, 2.0 * area / np.maximum(edges, 1), 0.0)


def measure_digits(images: np.ndarray, batch: int = 10000) -> Dict[str, np.ndarray]:
    """{'slant', 'thickness'}: raw measurements ([N] float64) of grey images (uint8, or floats in [0, 1])."""
    out = {m: [] for m in MEASURES}
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        out["slant"].append(slant(chunk))
        out["thickness"].append(thickness(chunk))
    return {m: np.concatenate(v) if v else np.zeros([0]) for m, v in out.items()}


class MomentScale:
    """Raw measurement -> [-1, 1] by its rank among the training images (2 * empirical CDF - 1)."""

    def __init__(self, train_values: np.ndarray):
        values = np.asarray(train_values, np.float64)
        if values.size < 2:
            raise ValueError("a scale needs at least two training values")
        self.knots = np.quantile(values, np.linspace(0.0, 1.0, _QUANTILES))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        # ties (e.g. many equal thicknesses) take the middle of their CDF step
        lo = np.interp(raw, self.knots, np.linspace(0.0, 1.0, _QUANTILES))
        hi = 1.0 - np.interp(-np.asarray(raw, np.float64), -self.knots[::-1], np.linspace(0.0, 1.0, _QUANTILES))
        return (lo + hi - 1.0).astype(np.float32)


def fit_columns(train_images: np.ndarray, measures: Sequence[str] = MEASURES):
    """(the training split's scales, its measurements on them): each image is measured once."""
    raw = measure_digits(train_images)
    scales = {m: MomentScale(raw[m]) for m in measures}
    return scales, {m: scale(raw[m]) for m, scale in scales.items()}


def fit_scales(train_images: np.ndarray, measures: Sequence[str] = MEASURES) -> Dict[str, MomentScale]:
    return fit_columns(train_images, measures)[0]


def scaled_columns(images: np.ndarray, scales: Dict[str, MomentScale]) -> Dict[str, np.ndarray]:
    """The measurements of `images` on the training split's [-1, 1] scales (float32 [N] per measure)."""
    raw = measure_digits(images)
    return {m: scale(raw[m]) for m, scale in scales.items()}
