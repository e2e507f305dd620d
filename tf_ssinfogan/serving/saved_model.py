"""Serving surface: a TF Serving-ready SavedModel of the generator and of Q (library; CLI: `tf_ssinfogan.export`).

Layout (TF Serving): `<export_base>/<model_name>/<version>/` holds one SavedModel with every signature below
(default model name `ssinfogan`). Each export takes the next integer version; an existing version is never
overwritten (written under a temporary name in the same folder, then renamed). `assets.extra/model_info.json`
records the latent spec, the data range and the class names of the categorical codes; `model_card.md` and
`model_card.json` beside it describe the data, the codes and the measured quality (`tf_ssinfogan.serving.model_card`).

Signatures (named inputs and outputs; every batch dimension is free, `B` below):

`serving_default`: explicit codes -> images.
  inputs:  'noise' float32 [B, noise_dim]; each code by its name: categorical -> int32 [B] class index,
           continuous / binary -> float32 [B, dim].
  outputs: 'images' float32 [B, H, W, C] in the data range, 'images_uint8' uint8 [B, H, W, C].
`sample`: draws latents from the priors with a stateless seeded RNG (same seed -> same output).
  inputs:  'batch_size' int32 [], 'seed' int32 [], and for each code '<name>' (categorical: int32 [] class
           index; others: float32 [dim]) with '<name>_fixed' bool []: when true every sample uses that value,
           otherwise the code is drawn from its prior.
  outputs: 'images', 'images_uint8', 'noise' and each code by name, in the `serving_default` input format
           (so the codes used can be sent back to `serving_default`).
`traverse`: one code swept in `steps` values, everything else fixed per row.
  inputs:  'code' string [] (a code name; 'name:d' picks dimension d of a multi-dimensional code),
           'steps' int32 [], 'rows' int32 [] (rows of independent other latents), 'seed' int32 [].
  outputs: 'images' / 'images_uint8' [rows * steps, H, W, C] row-major, 'values' float32 [steps] (the code
           values: class indices for a categorical code, -1..1 for continuous, 0..1 for binary),
           'grid_uint8' uint8 [rows * H, steps * W, C] (the tiled grid).
`classify` (Q): images float32 [B, H, W, C] in the data range -> per code: '<name>' (the estimate in the
  `serving_default` input format: int32 class index, 0/1 float attributes, continuous estimate) and, for
  categorical and binary codes, '<name>_probs' (class / attribute probabilities). Semi-supervised codes
  (tied to a label) are predictions of that label; unsupervised codes are Q's estimate of the code. Class
  index i of a semi-supervised categorical code is `model_info.json`'s `class_names[<name>][i]` (also in the
  model card).
`classify_uint8`: the same from uint8 images [B, H, W, C] (0..255).

Inputs are validated inside the graph (so TF Serving runs the checks too): a wrong width or image shape, a
class index outside [0, k), a non-finite value, inconsistent batch sizes, an unknown code name or a bad count
fail with InvalidArgumentError whose message starts with "input '<name>':".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import keras
import tensorflow as tf

from tf_ssinfogan.rundir import checkpoints
from tf_ssinfogan.model.images import float_to_uint8, images_to_float
from tf_ssinfogan.model.latents import NOISE, kind_of

DEFAULT_MODEL_NAME = "ssinfogan"
SERVING_DEFAULT = "serving_default"
SAMPLE = "sample"
TRAVERSE = "traverse"
CLASSIFY = "classify"
CLASSIFY_UINT8 = "classify_uint8"
SIGNATURES = (SERVING_DEFAULT, SAMPLE, TRAVERSE, CLASSIFY, CLASSIFY_UINT8)
MAX_BATCH = 4096  # upper bound of 'batch_size', 'steps' * 'rows' (a guard against accidental huge requests)
FIXED_SUFFIX = "_fixed"


# ------------------------------------------------------------------------------------------ input specs
def _spec(shape, dtype, name) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)


def generator_input_specs(space) -> Dict[str, tf.TensorSpec]:
    """`serving_default` inputs: noise and every code by name (categorical: int32 class index)."""
    specs = {}
    if space.noise_dim:
        specs[NOISE] = _spec([None, space.noise_dim], tf.float32, NOISE)
    for code in space.codes:
        specs[code.name] = kind_of(code).serving_spec(code)
    return specs


def sample_input_specs(space, seeded: bool = True) -> Dict[str, tf.TensorSpec]:
    """`sample` inputs: batch size, seed (SavedModel only) and, per code, a value and a '<name>_fixed' flag."""
    specs = {"batch_size": _spec([], tf.int32, "batch_size")}
    if seeded:
        specs["seed"] = _spec([], tf.int32, "seed")
    for code in space.codes:
        specs[code.name] = kind_of(code).serving_spec(code, batched=False)
        specs[code.name + FIXED_SUFFIX] = _spec([], tf.bool, code.name + FIXED_SUFFIX)
    return specs


def traverse_input_specs() -> Dict[str, tf.TensorSpec]:
    return {"code": _spec([], tf.string, "code"), "steps": _spec([], tf.int32, "steps"),
            "rows": _spec([], tf.int32, "rows"), "seed": _spec([], tf.int32, "seed")}


def classify_input_specs(image_shape, uint8: bool = False) -> Dict[str, tf.TensorSpec]:
    return {"images": _spec([None, *image_shape], tf.uint8 if uint8 else tf.float32, "images")}


def traverse_choices(space) -> List[Tuple[str, object, int]]:
    """(name accepted by `traverse`, code, dimension): 'name' (dimension 0) and, for d > 1, 'name:d'."""
    out = []
    for code in space.codes:
        out.append((code.name, code, 0))
        if kind_of(code).traversal_dims(code) > 1:
            out.extend((f"{code.name}:{d}", code, d) for d in range(code.dim))
    return out


# ------------------------------------------------------------------------------------------ validation
def _attach(value, checks):
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(value)


def _check_width(name, value, width):
    return tf.debugging.assert_equal(
        tf.shape(value)[-1], width, message=f"input '{name}': expected width {width} (last dimension)")


def _check_finite(name, value):
    return tf.debugging.assert_all_finite(value, message=f"input '{name}': values must be finite")


def _check_count(name, value, low, high):
    return [
        tf.debugging.assert_greater_equal(value, tf.constant(low, value.dtype),
                                          message=f"input '{name}': must be >= {low}"),
        tf.debugging.assert_less_equal(value, tf.constant(high, value.dtype),
                                       message=f"input '{name}': must be <= {high}"),
    ]


def validate_generator_inputs(space, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """In-graph checks of `serving_default` inputs; returns them with the checks attached (static widths)."""
    checked, batch = {}, None
    for name, value in inputs.items():
        code = next((c for c in space.codes if c.name == name), None)
        if code is not None:
            checks = kind_of(code).graph_checks(code, value)
        else:
            checks = [_check_width(name, value, space.noise_dim), _check_finite(name, value)]
        n = tf.shape(value)[0]
        if batch is None:
            batch = n
        else:
            checks.append(tf.debugging.assert_equal(
                n, batch, message=f"input '{name}': batch size differs from the other inputs"))
        value = _attach(value, checks)
        checked[name] = value if code is not None else tf.reshape(value, [-1, space.noise_dim])
    return checked


def validate_images(name, images, image_shape, data_range=None):
    """Shape [B, H, W, C] exactly; float images finite and within the data range (tolerance 1e-3)."""
    h, w, c = image_shape
    shape = tf.shape(images)
    checks = [tf.debugging.assert_equal(shape[1:], tf.constant([h, w, c]),
                                        message=f"input '{name}': expected images of shape [B, {h}, {w}, {c}]")]
    if data_range is not None:
        lo, hi = data_range
        checks.append(_check_finite(name, images))
        checks.append(tf.debugging.assert_greater_equal(
            images, tf.constant(lo - 1e-3, images.dtype),
            message=f"input '{name}': values must lie in the data range [{lo}, {hi}]"))
        checks.append(tf.debugging.assert_less_equal(
            images, tf.constant(hi + 1e-3, images.dtype),
            message=f"input '{name}': values must lie in the data range [{lo}, {hi}]"))
    return tf.ensure_shape(_attach(images, checks), [None, h, w, c])


# ------------------------------------------------------------------------------------------ the functions
class ServingFunctions:
    """The tf functions behind the signatures, for one trained `SSInfoGAN` (its generator and discriminator).

    `validate=False` leaves out the in-graph checks (TFLite has no Assert op; the TFLite callers check inputs).
    `seeded=False` makes `sample` use unseeded builtin random ops (TFLite builtins) instead of stateless ones.
    """

    def __init__(self, model, validate: bool = True, seeded: bool = True):
        self.space = model.latent_space
        self.codes = model.latent_config.codes
        self.generator = model.generator
        self.discriminator = model.discriminator
        self.data_range = model.network_config.data_range
        self.image_shape = tuple(model.network_config.image_shape)
        self.validate, self.seeded = validate, seeded

    # -- generator
    def _generate(self, latents: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """latents in the `serving_default` input format -> images (float and uint8)."""
        z = self.space.to_generator_input(self.space.from_values(latents))
        images = self.generator(z, training=False)
        return {"images": images, "images_uint8": float_to_uint8(images, self.data_range)}

    def serving_default(self, inputs):
        if self.validate:
            inputs = validate_generator_inputs(self.space, inputs)
        return self._generate(inputs)

    def _samplers(self, seed, part: int):
        """(uniform [0, 1), standard normal) samplers of a given shape: stateless ops keyed by (seed, part), or
        the builtin unseeded random ops when `seeded` is False (TFLite)."""
        def uniform(shape):
            if self.seeded:
                return tf.random.stateless_uniform(shape, tf.stack([seed, tf.constant(part, tf.int32)]))
            return tf.random.uniform(shape)

        def normal(shape):
            if self.seeded:
                return tf.random.stateless_normal(shape, tf.stack([seed, tf.constant(part, tf.int32)]))
            return tf.random.normal(shape)

        return uniform, normal

    def draw_latents(self, batch, seed=None) -> Dict[str, tf.Tensor]:
        """Latents from the priors in the `serving_default` input format (class indices for categorical)."""
        out = {}
        if self.space.noise_dim:
            uniform, normal = self._samplers(seed, 0)
            shape = tf.stack([batch, self.space.noise_dim])
            out[NOISE] = normal(shape) if self.space.config.noise_distribution == "normal" \
                else uniform(shape) * 2.0 - 1.0
        for i, code in enumerate(self.codes):
            uniform, _ = self._samplers(seed, i + 1)
            out[code.name] = kind_of(code).from_uniform(code, uniform, batch)
        return out

    def sample(self, inputs):
        batch = inputs["batch_size"]
        checks = []
        if self.validate:
            checks += _check_count("batch_size", batch, 1, MAX_BATCH)
            for code in self.codes:
                # A value is checked only where it is used (its '<name>_fixed' is true).
                fixed = inputs[code.name + FIXED_SUFFIX]
                v = tf.where(fixed, inputs[code.name], tf.zeros_like(inputs[code.name]))
                checks += kind_of(code).graph_checks(code, v)
        batch = _attach(batch, checks)
        latents = self.draw_latents(batch, inputs.get("seed"))
        for code in self.codes:
            fixed = inputs[code.name + FIXED_SUFFIX]
            latents[code.name] = tf.where(fixed, kind_of(code).fill(code, inputs[code.name], batch),
                                          latents[code.name])
        out = self._generate(latents)
        out.update(latents)
        return out

    def traverse(self, inputs):
        name, steps, rows, seed = inputs["code"], inputs["steps"], inputs["rows"], inputs["seed"]
        choices = traverse_choices(self.space)
        names = tf.constant([c[0] for c in choices])
        hit = tf.equal(names, name)
        checks = [tf.debugging.Assert(
            tf.reduce_any(hit), [f"input 'code': unknown code name; expected one of {[c[0] for c in choices]}, got",
                                 name])]
        checks += _check_count("steps", steps, 2, MAX_BATCH)
        checks += _check_count("rows", rows, 1, MAX_BATCH)
        checks.append(tf.debugging.assert_less_equal(
            steps * rows, MAX_BATCH, message=f"input 'steps': steps * rows must be <= {MAX_BATCH}"))
        index = _attach(tf.cast(tf.argmax(tf.cast(hit, tf.int32)), tf.int32), checks)
        base = self.draw_latents(rows, seed)
        base = {k: tf.repeat(v, steps, axis=0) for k, v in base.items()}  # [rows * steps, ...], row-major

        def branch(code, dim):
            def fn():
                lat = dict(base)
                kind = kind_of(code)
                values = kind.sweep(code, steps)
                lat[code.name] = kind.replace_dim(code, lat[code.name], dim, tf.tile(values, [rows]))
                return self.space.to_generator_input(self.space.from_values(lat)), tf.cast(values, tf.float32)
            return fn

        z, values = tf.switch_case(index, [branch(code, dim) for _, code, dim in choices])
        images = self.generator(z, training=False)
        uint8 = float_to_uint8(images, self.data_range)
        h, w, c = self.image_shape
        grid = tf.reshape(tf.transpose(tf.reshape(uint8, [rows, steps, h, w, c]), [0, 2, 1, 3, 4]),
                          [rows * h, steps * w, c])
        return {"images": images, "images_uint8": uint8, "values": values, "grid_uint8": grid}

    # -- Q
    def classify(self, inputs):
        images = inputs["images"]
        if self.validate:
            images = validate_images("images", images, self.image_shape, self.data_range)
        return self._q(images)

    def classify_uint8(self, inputs):
        images = inputs["images"]
        if self.validate:
            images = validate_images("images", images, self.image_shape)
        return self._q(images_to_float(images, self.data_range))

    def _q(self, images):
        q = self.discriminator(images, training=False)["q"]
        out = {}
        for code in self.codes:
            kind = kind_of(code)
            probs = kind.probabilities(q[code.name])
            if kind.has_probabilities:
                out[code.name + "_probs"] = probs
            out[code.name] = kind.prediction(probs)
        return out


def error_message(error) -> str:
    """The message of a failed in-graph check ("input '<name>': <problem>") out of a TF error's text."""
    text = str(error).replace("\\'", "'")
    i = text.find("input '")
    if i < 0:
        return text.strip()
    text = text[i:]
    ends = [j for j in (text.find("] ["), text.find("]\n")) if j >= 0]
    return text[:min(ends)] if ends else text


def build_archive(model, validate: bool = True, seeded: bool = True,
                  signatures=SIGNATURES) -> keras.export.ExportArchive:
    """An ExportArchive with the requested signatures (see the module docstring); always float32 (a model
    trained in mixed precision is exported through a float32 copy of its weights)."""
    model = model.float32_copy()
    fns = ServingFunctions(model, validate=validate, seeded=seeded)
    space, shape = model.latent_space, tuple(model.network_config.image_shape)
    specs = {
        SERVING_DEFAULT: generator_input_specs(space),
        SAMPLE: sample_input_specs(space, seeded=seeded),
        TRAVERSE: traverse_input_specs(),
        CLASSIFY: classify_input_specs(shape),
        CLASSIFY_UINT8: classify_input_specs(shape, uint8=True),
    }
    archive = keras.export.ExportArchive()
    archive.track(model.generator)
    archive.track(model.discriminator)
    for name in signatures:
        archive.add_endpoint(name, getattr(fns, name), input_signature=[specs[name]])
    return archive


def model_info(model) -> dict:
    lat = model.latent_config
    return {
        "noise_dim": lat.noise_dim,
        "noise_distribution": lat.noise_distribution,
        "codes": [{"name": c.name, "kind": c.kind, "dim": c.dim, "label": c.label} for c in lat.codes],
        "image_shape": list(model.network_config.image_shape),
        "data_range": list(model.network_config.data_range),
        "signatures": list(SIGNATURES),
    }


# ------------------------------------------------------------------------------------------ versioned write
def existing_versions(model_dir: str) -> List[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit())


def next_version(model_dir: str) -> int:
    return max(existing_versions(model_dir), default=0) + 1


def write_versioned(model_dir: str, write_fn, version: int = None) -> str:
    """Writes a new version folder `<model_dir>/<version>` atomically; returns its path.

    `write_fn(tmp_dir)` fills a temporary folder in `model_dir`, which is then renamed to the version. An
    existing version is never overwritten: an explicit `version` that exists raises FileExistsError; an
    automatic version that another writer took meanwhile moves on to the next number.
    """
    os.makedirs(model_dir, exist_ok=True)
    if version is not None:
        if int(version) < 1:
            raise ValueError(f"version must be a positive integer, got {version}")
        if os.path.exists(os.path.join(model_dir, str(version))):
            raise FileExistsError(f"export version {os.path.join(model_dir, str(version))!r} already exists; "
                                  "versions are never overwritten")
    tmp = tempfile.mkdtemp(dir=model_dir, prefix=".tmp_")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700: let a model server running as another user read it
    try:
        write_fn(tmp)
        for _ in range(100):
            v = int(version) if version is not None else next_version(model_dir)
            final = os.path.join(model_dir, str(v))
            try:
                os.mkdir(final)  # claims the number; fails if taken
            except FileExistsError:
                if version is not None:
                    raise FileExistsError(f"export version {final!r} already exists; versions are never "
                                          "overwritten") from None
                continue
            os.rename(tmp, final)  # replaces the empty folder just made
            return final
        raise RuntimeError(f"could not claim a new version in {model_dir!r}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_saved_model(model, export_base: str, model_name: str = DEFAULT_MODEL_NAME,
                       version: int = None, card: dict = None) -> str:
    """Writes the SavedModel (every signature) to `<export_base>/<model_name>/<version>`; returns the path.

    `card` (`model_card.card_data`) adds assets.extra/model_card.{md,json} and the class names to model_info.json.
    """
    archive = build_archive(model)
    info = model_info(model)
    if card is not None:
        from tf_ssinfogan.serving import model_card

        info["class_names"] = model_card.class_names(card)

    def write(tmp):
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, "assets.extra", "model_info.json"), "w") as f:
            json.dump(info, f, indent=2)
        if card is not None:
            model_card.write_card(os.path.join(tmp, "assets.extra"), card)

    return write_versioned(os.path.join(export_base, model_name), write, version)


# Kept for callers of the old `export.export_generator`: the SavedModel now carries Q's signatures too.
export_generator = export_saved_model


def restore_run(run_dir: str, checkpoint: str = None):
    """Rebuilds the model of a training run folder and restores its newest (or the given) checkpoint."""
    return checkpoints.load_run(run_dir, checkpoint or "")[1]
