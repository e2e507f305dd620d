"""SavedModel export of the generator (library; the CLI is `python -m tf_ssinfogan.export_cli`).

Layout (TF Serving): `<export_base>/<model_name>/<version>/` with a new integer version per export; an
existing version is never overwritten (written under a temporary name, then renamed).

Signature `serving_default`, batch dimension free:
  inputs:  'noise' float32 [B, noise_dim]; each code by name: categorical -> int32 [B] class index,
           continuous / binary -> float32 [B, dim].
  outputs: 'images' float32 [B, H, W, C] in the data range, 'images_uint8' uint8 [B, H, W, C].
Inputs are validated inside the graph: a class index outside [0, k), a non-finite value, or a wrong width
fails with an InvalidArgumentError naming the input.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Dict

import keras
import tensorflow as tf

from tf_ssinfogan.data import float_to_uint8
from tf_ssinfogan.latents import NOISE


def input_specs(latent_space) -> Dict[str, tf.TensorSpec]:
    specs = {}
    if latent_space.noise_dim:
        specs[NOISE] = tf.TensorSpec([None, latent_space.noise_dim], tf.float32, name=NOISE)
    for code in latent_space.codes:
        if code.kind == "categorical":
            specs[code.name] = tf.TensorSpec([None], tf.int32, name=code.name)
        else:
            specs[code.name] = tf.TensorSpec([None, code.dim], tf.float32, name=code.name)
    return specs


def validate_inputs(latent_space, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """In-graph checks that name the offending input; returns the inputs with the checks attached."""
    checked = {}
    batch = None
    for name, value in inputs.items():
        code = next((c for c in latent_space.codes if c.name == name), None)
        deps = []
        if code is not None and code.kind == "categorical":
            deps += [
                tf.debugging.assert_non_negative(value, message=f"input '{name}': class index must be >= 0"),
                tf.debugging.assert_less(value, tf.constant(code.dim, value.dtype),
                                         message=f"input '{name}': class index must be < {code.dim}"),
            ]
        else:
            deps.append(tf.debugging.assert_all_finite(value, message=f"input '{name}': values must be finite"))
        n = tf.shape(value)[0]
        if batch is None:
            batch = n
        else:
            deps.append(tf.debugging.assert_equal(n, batch, message=f"input '{name}': batch size differs from the other inputs"))
        with tf.control_dependencies(deps):
            checked[name] = tf.identity(value)
    return checked


def _next_version(model_dir: str) -> int:
    versions = [int(d) for d in os.listdir(model_dir) if d.isdigit()] if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def export_generator(model, export_base: str, model_name: str = "generator", version: int = None) -> str:
    """Writes the generator SavedModel to `<export_base>/<model_name>/<version>` and returns that path."""
    space = model.latent_space
    data_range = model.network_config.data_range
    generator = model.generator
    specs = input_specs(space)

    def serve(inputs):
        inputs = validate_inputs(space, inputs)
        latents = space.from_values(inputs)
        images = generator(space.to_generator_input(latents), training=False)
        return {"images": images, "images_uint8": float_to_uint8(images, data_range)}

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint("serving_default", serve, input_signature=[specs])
    model_dir = os.path.join(export_base, model_name)
    os.makedirs(model_dir, exist_ok=True)
    version = version or _next_version(model_dir)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"export version {final!r} already exists; versions are never overwritten")
    tmp = tempfile.mkdtemp(dir=model_dir, prefix=f".tmp_{version}_")
    try:
        archive.write_out(tmp, verbose=False)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
