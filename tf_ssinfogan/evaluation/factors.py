"""Judge-free scores for data built with known factors (data/synthetic.py): the samples' pixels are measured.

Colour digits: for each code tied to the 'fg' or 'bg' column, the accuracy of class-conditioned samples whose
colour read from the pixels (`synthetic.measure_colours`) is the code's value.
Sprites: samples drawn from the priors are measured (`synthetic.measure_sprites`: centroid -> x, y; area ->
scale, given the shape code; mean intensity -> bright); for each code tied to a factor, Pearson and Spearman
correlation (continuous) or accuracy (binary) between the code fed to G and the measured factor; and the
mutual information gap (Chen et al. 2018) between every code and the measured factors.
Digits with measured slant / thickness columns (`--measured_labels`, `data/moments.py`): samples drawn from the priors
are measured with the same pixel formulas and mapped to [-1, 1] with the training split's scale; for each code
tied to one of those columns, the Pearson and Spearman correlation between the code fed to G and the measurement.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from tf_ssinfogan.data import moments, synthetic
from tf_ssinfogan.evaluation import grids, metrics
from tf_ssinfogan.model.latents import kind_of


def colour_digit_scores(model, per_value: int = 128, seed=(0, 6)) -> Dict[str, dict]:
    """{code: {'accuracy', 'samples'}} for the codes tied to the colour columns 'fg' and 'bg'."""
    out = {}
    for code in model.latent_config.codes:
        if code.label not in ("fg", "bg"):
            continue
        latents = grids.class_conditioned_latents(model.latent_space, code.name, per_value, seed)
        fg, bg = synthetic.measure_colours(grids.generate_uint8(model, latents))
        measured = fg if code.label == "fg" else bg
        values = np.repeat(np.arange(code.dim), per_value)
        out[code.name] = {"accuracy": float(np.mean(measured == values)), "samples": int(len(values)),
                          "measured_from": "pixels (synthetic.measure_colours)"}
    return out


def sprite_scores(model, num: int = 2000, seed=(0, 7)) -> dict:
    """Per factor code: correlation or accuracy against the factor measured on samples; and the MIG."""
    space = model.latent_space
    latents = space.sample(num, tf.constant(seed))
    images = grids.generate_uint8(model, latents)
    values = {c.name: (np.argmax(latents[c.name].numpy(), -1) if kind_of(c).enumerable
                       else latents[c.name].numpy()[:, 0]) for c in space.codes}
    shape_code = next((c for c in space.codes if c.label == "shape"), None)
    measured = synthetic.measure_sprites(images, values[shape_code.name] if shape_code is not None else None)
    scores = {}
    for code in space.codes:
        if code.label in ("x", "y", "scale"):
            scores[code.name] = {"factor": code.label,
                                 "pearson": metrics.pearson(values[code.name], measured[code.label]),
                                 "spearman": metrics.spearman(values[code.name], measured[code.label])}
        elif code.label == "bright":
            scores[code.name] = {"factor": "bright",
                                 "accuracy": float(np.mean((values[code.name] > 0.5) == (measured["bright"] > 0)))}
    factors = {k: measured[k] for k in ("x", "y", "scale", "bright")}
    mig = metrics.mutual_information_gap(values, factors)
    return {"codes": scores, "mig": mig["mig"], "mig_per_factor": mig["per_factor"], "samples": num,
            "measured_from": "pixels (synthetic.measure_sprites)"}


def moment_scores(model, source, num: int = 2000, seed=(0, 8)) -> dict:
    """Per code tied to a measured column (slant, thickness): Pearson and Spearman correlation between the code
    fed to G and the samples' measurement; {} when no code is."""
    codes = [c for c in model.latent_config.codes
             if c.label in moments.MEASURES and c.label in getattr(source, "train_labels", {})]
    if not codes:
        return {}
    latents = model.latent_space.sample(num, tf.constant(seed))
    images = grids.generate_uint8(model, latents)
    scales = moments.fit_scales(source.train_images, sorted({c.label for c in codes}))
    measured = moments.scaled_columns(images, scales)
    out = {}
    for code in codes:
        value = latents[code.name].numpy()[:, 0]
        out[code.name] = {"factor": code.label, "pearson": metrics.pearson(value, measured[code.label]),
                          "spearman": metrics.spearman(value, measured[code.label])}
    return {"codes": out, "samples": num, "measured_from": "pixels (moments.measure_digits)"}


def built_data_scores(model, source_kind: str, source=None) -> dict:
    """The judge-free scores of a run on built data or measured columns ({} for other sources)."""
    if source_kind == "colour_digits":
        return {"colour_codes": colour_digit_scores(model)}
    if source_kind == "sprites":
        return {"sprite_factors": sprite_scores(model)}
    scores = moment_scores(model, source) if source is not None else {}
    return {"measured_factors": scores} if scores else {}
