"""Data sets built offline, with known factors: colour digits from the shipped MNIST, and procedural sprites.

Both are deterministic (same seed, same bytes), need no network, and give every factor as a label column, so
the 32x32 and 64x64 networks, binary and continuous codes can be trained and measured on these machines.

Colour digits (`colour_digits`): each MNIST digit (28x28, padded to 32x32) drawn in a foreground colour from
`FOREGROUND` on a background colour from `BACKGROUND`, both drawn uniformly per image:
    pixel = background * (1 - a) + foreground * a,   a = MNIST intensity / 255.
Columns: 'label' (the digit), 'fg' and 'bg' (palette indices). A sample's colours are read back from its
pixels (`measure_colours`: the background is the median of the border, the foreground the mean of the pixels
farthest from it; each matched to the nearest palette entry), so the colour codes need no learned judge.

Sprites (`sprites`), in the manner of dSprites (Matthey et al. 2017): a white or grey shape (square, ellipse,
heart) on black, rendered with 4x supersampling at any size (32 or 64). Factors, each a label column:
'shape' (0 square, 1 ellipse, 2 heart), 'scale', 'rotation', 'x', 'y' (continuous in [-1, 1]) and 'bright'
(binary: intensity 1.0 or 0.55). Geometry, in pixel units of a size-S image (pixel i spans [i, i+1]):
    radius r = S * (R_MIN + (R_MAX - R_MIN) * (scale + 1) / 2);  angle = pi * (rotation + 1)
    centre  = M + (S - 2M) * (x + 1) / 2 (y upwards), with the margin M = S * R_MAX * 1.2
Every shape's area centroid is its centre, so the centroid of a rendered sprite measures x and y.
A generated sprite is measured without a judge (`measure_sprites`): its intensity-weighted foreground centroid
gives x and y, sqrt(area / unit area of its shape) gives the radius and so the scale, its mean foreground
intensity the brightness bit.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

FOREGROUND = np.array([[255, 255, 255], [230, 25, 75], [60, 200, 75], [255, 225, 25], [70, 240, 240]], np.float32)
FOREGROUND_NAMES = ("white", "red", "green", "yellow", "cyan")
BACKGROUND = np.array([[0, 0, 0], [0, 0, 110], [100, 35, 0]], np.float32)
BACKGROUND_NAMES = ("black", "navy", "brown")

SHAPES = ("square", "ellipse", "heart")
R_MIN, R_MAX = 0.12, 0.22
MARGIN = R_MAX * 1.2  # every shape lies within 1.14 radii of its centre, at any rotation
BRIGHT, DIM = 1.0, 0.55
SUPERSAMPLE = 4


# ------------------------------------------------------------------------------------------ colour digits
def colour_digits(mnist_images: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [N, 32, 32, 3], fg [N], bg [N]) from MNIST images uint8 [N, 28, 28] and a seed."""
    rng = np.random.RandomState(seed)
    n = len(mnist_images)
    fg = rng.randint(0, len(FOREGROUND), n)
    bg = rng.randint(0, len(BACKGROUND), n)
    a = np.pad(mnist_images.astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))[..., None]
    out = BACKGROUND[bg][:, None, None, :] * (1.0 - a) + FOREGROUND[fg][:, None, None, :] * a
    return np.round(out).astype(np.uint8), fg.astype(np.int64), bg.astype(np.int64)


def measure_colours(images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(fg index [N], bg index [N]) read from uint8 or [0, 1] float images [N, H, W, 3]."""
    x = np.asarray(images, np.float32)
    if x.max() <= 1.0 + 1e-6:
        x = x * 255.0
    border = np.concatenate([x[:, :2].reshape(len(x), -1, 3), x[:, -2:].reshape(len(x), -1, 3),
                             x[:, :, :2].reshape(len(x), -1, 3), x[:, :, -2:].reshape(len(x), -1, 3)], axis=1)
    bg_colour = np.median(border, axis=1)
    flat = x.reshape(len(x), -1, 3)
    dist = np.linalg.norm(flat - bg_colour[:, None, :], axis=-1)
    k = max(1, flat.shape[1] // 20)  # the 5% of pixels farthest from the background
    far = np.argsort(dist, axis=1)[:, -k:]
    fg_colour = np.take_along_axis(flat, far[..., None], axis=1).mean(axis=1)
    nearest = lambda c, palette: np.argmin(np.linalg.norm(c[:, None, :] - palette[None], axis=-1), axis=1)
    return nearest(fg_colour, FOREGROUND), nearest(bg_colour, BACKGROUND)


# ------------------------------------------------------------------------------------------ sprites
def _inside_one(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether unit-radius shape coordinates (u right, v up) lie inside shape `shape`."""
    if shape == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == 1:  # ellipse
        return u ** 2 + (v / 0.6) ** 2 <= 1.0
    hu, hv = u / 0.85, v / 0.85 + 0.2935  # heart, shifted so that its area centroid is its centre
    return (hu ** 2 + hv ** 2 - 1.0) ** 3 - hu ** 2 * hv ** 3 <= 0.0


def _inside(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`_inside_one` for every image's own shape (shape [N], u and v [N, ...])."""
    out = np.zeros(u.shape, bool)
    for k in np.unique(shape):
        out[shape == k] = _inside_one(int(k), u[shape == k], v[shape == k])
    return out


def unit_areas(samples: int = 400) -> np.ndarray:
    """Area of each shape at radius 1 (in squared radius units), by the same inside test on a fine grid."""
    t = (np.arange(samples) + 0.5) / samples * 3.0 - 1.5
    u, v = np.meshgrid(t, -t)
    cell = (3.0 / samples) ** 2
    return np.array([_inside_one(k, u, v).sum() * cell for k in range(len(SHAPES))])


def sprite_geometry(factors: Dict[str, np.ndarray], size: int) -> Dict[str, np.ndarray]:
    """Pixel-unit centre (cx, cy from the top-left corner), radius and angle of each sprite."""
    margin = MARGIN * size
    span = size - 2 * margin
    return {"cx": margin + span * (factors["x"] + 1) / 2, "cy": margin + span * (1 - (factors["y"] + 1) / 2),
            "radius": size * (R_MIN + (R_MAX - R_MIN) * (factors["scale"] + 1) / 2),
            "angle": math.pi * (factors["rotation"] + 1)}


def render_sprites(factors: Dict[str, np.ndarray], size: int, chunk: int = 1024) -> np.ndarray:
    """uint8 images [N, size, size, 1] of the sprites with the given factors (see the module docstring).

    Each sprite is rendered in a window of whole pixels around its centre (it never reaches farther than 1.14
    radii), one shape at a time, with SUPERSAMPLE^2 samples per pixel."""
    geo = sprite_geometry(factors, size)
    n = len(factors["shape"])
    out = np.zeros((n, size, size, 1), np.uint8)
    ss = SUPERSAMPLE
    win = int(math.ceil(2 * 1.2 * R_MAX * size)) + 2
    t = (np.arange(win * ss) + 0.5) / ss  # sub-pixel centres within the window, in pixel units
    wx, wy = np.meshgrid(t, t)
    left = np.clip(np.floor(geo["cx"] - win / 2).astype(int), 0, size - win)
    top = np.clip(np.floor(geo["cy"] - win / 2).astype(int), 0, size - win)
    for shape in range(len(SHAPES)):
        idx = np.flatnonzero(factors["shape"] == shape)
        for i in range(0, len(idx), chunk):
            j = idx[i:i + chunk]
            dx = wx[None] + left[j, None, None] - geo["cx"][j, None, None]
            dy = -(wy[None] + top[j, None, None] - geo["cy"][j, None, None])  # v points up
            c, s = np.cos(geo["angle"][j])[:, None, None], np.sin(geo["angle"][j])[:, None, None]
            r = geo["radius"][j, None, None]
            u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r  # rotate by -angle into the shape's frame
            mask = _inside_one(shape, u, v).astype(np.float32)
            cover = mask.reshape(len(j), win, ss, win, ss).mean(axis=(2, 4))
            level = np.where(factors["bright"][j] > 0, BRIGHT, DIM)[:, None, None]
            pixels = np.round(cover * level * 255.0).astype(np.uint8)
            for k, (jj, y0, x0) in enumerate(zip(j, top[j], left[j])):
                out[jj, y0:y0 + win, x0:x0 + win, 0] = pixels[k]
    return out


def sprite_factors(n: int, seed: int) -> Dict[str, np.ndarray]:
    """Independent uniform factors for n sprites."""
    rng = np.random.RandomState(seed)
    return {"shape": rng.randint(0, len(SHAPES), n).astype(np.int64),
            "scale": rng.uniform(-1, 1, n).astype(np.float32),
            "rotation": rng.uniform(-1, 1, n).astype(np.float32),
            "x": rng.uniform(-1, 1, n).astype(np.float32),
            "y": rng.uniform(-1, 1, n).astype(np.float32),
            "bright": rng.randint(0, 2, n).astype(np.int64)}


def sprites(n: int, size: int, seed: int) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """(images uint8 [n, size, size, 1], factor columns) of n sprites drawn with `seed`."""
    factors = sprite_factors(n, seed)
    return render_sprites(factors, size), factors


def measure_sprites(images: np.ndarray, shape: np.ndarray = None, threshold: float = 0.25) -> Dict[str, np.ndarray]:
    """Factors read from sprite images ([N, S, S, 1], uint8 or [0, 1] floats): x, y (centroid), scale (from the
    area, given each image's shape index, else the mean unit area), bright (0/1) and the foreground area."""
    x = np.asarray(images, np.float32)[..., 0]
    if x.max() > 1.0 + 1e-6:
        x = x / 255.0
    n, size = len(x), x.shape[1]
    w = np.where(x > threshold * DIM, x, 0.0)
    total = w.sum(axis=(1, 2)) + 1e-8
    centres = np.arange(size) + 0.5
    cx = (w.sum(axis=1) * centres).sum(axis=1) / total
    cy = (w.sum(axis=2) * centres).sum(axis=1) / total
    margin, span = MARGIN * size, size - 2 * MARGIN * size
    lit = x > threshold * DIM
    area = lit.sum(axis=(1, 2)).astype(np.float32)
    # the 90th percentile of the lit pixels: interior pixels, not the partly covered edge
    level = np.nan_to_num(np.nanpercentile(np.where(lit, x, np.nan).reshape(n, -1), 90, axis=1))
    unit = unit_areas()
    per_image = unit[shape] if shape is not None else np.full(n, unit.mean())
    radius = np.sqrt(area / per_image)
    return {"x": (cx - margin) / span * 2 - 1, "y": 1 - (cy - margin) / span * 2,
            "scale": ((radius / size) - R_MIN) / (R_MAX - R_MIN) * 2 - 1,
            "bright": (level > (BRIGHT + DIM) / 2).astype(np.int64), "area": area}
