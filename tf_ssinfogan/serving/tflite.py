"""TFLite / LiteRT conversion of the generator and of Q (library; CLI: `python -m tf_ssinfogan.export --tflite`).

Two models per quantisation, builtin ops only (no Flex), batch dimension free:
  * generator: signatures `serving_default` (explicit codes -> images, inputs as in serving.py) and `sample`
    (inputs 'batch_size' and, per code, '<name>' / '<name>_fixed'; no 'seed': it uses the builtin random ops
    RANDOM_STANDARD_NORMAL / RANDOM_UNIFORM, because stateless seeded RNG ops do not convert to builtins;
    the codes used come back as outputs). LiteRT keeps the RNG state in the interpreter: successive calls
    draw fresh latents, while a fresh interpreter, or a new batch size (which re-prepares the ops), restarts
    the same stream.
  * classifier: signature `classify` (float images in the data range -> Q's outputs, as in serving.py).
Quantisations: 'float32' (no optimisation), 'float16' (float16 weights), 'int8' (dynamic-range: int8 weights,
float activations). TFLite has no Assert op, so these models do not validate inputs: callers check them
(`check_inputs`, used by the sample CLI).

Every converted model is checked against the SavedModel with the LiteRT interpreter (`parity`): maximum
absolute difference of the images (and Q's outputs) on fixed inputs; for `sample`, the images it returns
against the SavedModel's `serving_default` fed with the codes it returns.

  model = serving.restore_run("runs/mnist")
  files = export_tflite(model, "runs/mnist/export/ssinfogan_tflite/1", saved_model_dir="runs/mnist/export/ssinfogan/1")
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from tf_ssinfogan.serving import saved_model as serving
from tf_ssinfogan.model.latents import first_enumerable, kind_of

QUANTIZATIONS = ("float32", "float16", "int8")
GENERATOR_SIGNATURES = (serving.SERVING_DEFAULT, serving.SAMPLE)
CLASSIFIER_SIGNATURES = (serving.CLASSIFY,)


def write_tflite_saved_model(model, path: str) -> str:
    """The SavedModel TFLite is converted from: no in-graph asserts, unseeded builtin random ops in `sample`."""
    serving.build_archive(model, validate=False, seeded=False,
                          signatures=GENERATOR_SIGNATURES + CLASSIFIER_SIGNATURES).write_out(path, verbose=False)
    return path


def _convert(converter, quantization: str) -> bytes:
    """The flatbuffer of a converter: builtin ops only, weights quantised as `quantization` says."""
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization in ("float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert(saved_model_dir: str, signature_keys: Sequence[str], quantization: str = "float32") -> bytes:
    """Converts the given signatures of a SavedModel to a TFLite flatbuffer (builtin ops only)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of {QUANTIZATIONS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=list(signature_keys))
    return _convert(converter, quantization)


def convert_fixed_batch(model, batch: int = 1, quantization: str = "float32") -> bytes:
    """`serving_default` of `model`'s generator for exactly `batch` latents, as a TFLite flatbuffer (builtin ops).

    The free-batch models compute each transposed convolution's output shape at run time, and XNNPACK only
    takes a TRANSPOSE_CONV whose output shape is a constant: there the op falls back to LiteRT's builtin
    kernel, which for int8 weights (dynamic range) is a slow reference kernel (about 6.5 of the MNIST int8
    generator's 7-12 ms at batch 1 on x86). With every shape fixed XNNPACK runs the whole generator, in
    float32 and int8 alike (benchmarks/export_latency.py --fixed_batch).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of {QUANTIZATIONS}")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fns = serving.ServingFunctions(model, validate=False, seeded=False)
    specs = {name: tf.TensorSpec([batch] + list(spec.shape[1:]), spec.dtype, name=name)
             for name, spec in serving.generator_input_specs(model.latent_space).items()}
    # frozen: converted with its variables, the weights stay variables (READ_VARIABLE) and BatchNorm unfolded
    concrete = convert_variables_to_constants_v2(tf.function(fns.serving_default).get_concrete_function(specs))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    return _convert(converter, quantization)


def interpreter(model_content: bytes = None, model_path: str = None):
    """A LiteRT interpreter (`ai_edge_litert`; `tf.lite.Interpreter` is deprecated in TF 2.21)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_content, model_path=model_path)


def run_signature(interp, key: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Runs one signature of a LiteRT interpreter (inputs are resized to the given batch)."""
    runner = interp.get_signature_runner(key)
    return {k: np.asarray(v) for k, v in runner(**inputs).items()}


def signature_inputs(interp, key: str) -> Dict[str, dict]:
    """{input name: {'shape', 'shape_signature', 'dtype'}} of a signature."""
    runner = interp.get_signature_runner(key)
    return {name: {"shape": d["shape"], "shape_signature": d["shape_signature"], "dtype": d["dtype"]}
            for name, d in runner.get_input_details().items()}


# ------------------------------------------------------------------------------------------ inputs
def fixed_latents(space, batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Deterministic `serving_default` inputs from numpy (for parity checks and benchmarks)."""
    rng = np.random.RandomState(seed)
    out = {}
    if space.noise_dim:
        out["noise"] = rng.standard_normal((batch, space.noise_dim)).astype(np.float32)
    for code in space.codes:
        out[code.name] = kind_of(code).numpy_values(code, rng, batch)
    return out


def sample_request(space, batch: int, fixed: Dict[str, object] = None, seed: int = None) -> Dict[str, np.ndarray]:
    """`sample` inputs: `fixed` maps code names to a class index or a value list; the rest is drawn."""
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - {c.name for c in space.codes})
    if unknown:
        raise ValueError(f"unknown code(s) {unknown}; the codes are {[c.name for c in space.codes]}")
    out = {"batch_size": np.array(batch, np.int32)}
    if seed is not None:
        out["seed"] = np.array(seed, np.int32)
    for code in space.codes:
        out[code.name] = kind_of(code).numpy_value(code, fixed.get(code.name))
        out[code.name + serving.FIXED_SUFFIX] = np.array(code.name in fixed)
    check_inputs(space, out, sample=True)
    return out


def check_inputs(space, inputs: Dict[str, np.ndarray], sample: bool = False) -> None:
    """The checks the SavedModel runs in-graph, in numpy (TFLite models have none). Raises ValueError."""
    for code in space.codes:
        if code.name not in inputs:
            raise ValueError(f"input '{code.name}': missing")
        if sample and not bool(inputs[code.name + serving.FIXED_SUFFIX]):
            continue
        kind_of(code).check_numpy(code, inputs[code.name])
    if sample:
        b = int(inputs["batch_size"])
        if not 1 <= b <= serving.MAX_BATCH:
            raise ValueError(f"input 'batch_size': must be in [1, {serving.MAX_BATCH}], got {b}")
    elif space.noise_dim:
        v = np.asarray(inputs["noise"])
        if v.ndim != 2 or v.shape[1] != space.noise_dim:
            raise ValueError(f"input 'noise': expected shape [B, {space.noise_dim}], got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError("input 'noise': values must be finite")


# ------------------------------------------------------------------------------------------ parity
def _max_diff(a: Dict[str, np.ndarray], b: Dict[str, tf.Tensor], keys) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in keys)


def parity(space, generator_bytes: bytes, classifier_bytes: bytes, saved_model, batch: int = 16) -> Dict[str, float]:
    """Max abs differences of the TFLite models against the SavedModel's signatures on fixed inputs.

    `saved_model`: a SavedModel folder or an already loaded one (`tf.saved_model.load`).
    """
    loaded = tf.saved_model.load(saved_model) if isinstance(saved_model, str) else saved_model
    ref_gen = loaded.signatures[serving.SERVING_DEFAULT]
    latents = fixed_latents(space, batch)
    ref = ref_gen(**{k: tf.constant(v) for k, v in latents.items()})
    gen = interpreter(generator_bytes)
    out = run_signature(gen, serving.SERVING_DEFAULT, latents)
    result = {"serving_default": _max_diff(out, ref, ["images"])}

    cat = first_enumerable(space.codes)
    fixed = {cat.name: cat.dim - 1} if cat is not None else {}
    sampled = run_signature(gen, serving.SAMPLE, sample_request(space, batch, fixed))
    if cat is not None and not np.all(sampled[cat.name] == cat.dim - 1):
        raise AssertionError(f"TFLite sample ignored the fixed value of code {cat.name!r}")
    codes = {k: tf.constant(sampled[k]) for k in ref_gen.structured_input_signature[1]}
    result["sample"] = _max_diff(sampled, ref_gen(**codes), ["images"])

    images = ref["images"].numpy()
    ref_q = loaded.signatures[serving.CLASSIFY](images=tf.constant(images))
    q = run_signature(interpreter(classifier_bytes), serving.CLASSIFY, {"images": images})
    float_keys = [k for k in ref_q if ref_q[k].dtype == tf.float32]
    result["classify"] = _max_diff(q, ref_q, float_keys)
    for k, v in result.items():
        if not np.isfinite(v):
            raise AssertionError(f"TFLite {k}: non-finite outputs (a broken conversion)")
    return result


def export_tflite(model, out_dir: str, saved_model_dir: str, quantizations: Sequence[str] = QUANTIZATIONS,
                  check: bool = True) -> dict:
    """Writes `generator_<q>.tflite` and `classifier_<q>.tflite` per quantisation, `tflite_report.json`
    (sizes and parity against `saved_model_dir`) and `model_info.json` (the latent spec) into the existing
    folder `out_dir`; returns the report."""
    report = {}
    loaded = tf.saved_model.load(saved_model_dir) if check else None
    with tempfile.TemporaryDirectory() as tmp:
        src = write_tflite_saved_model(model, os.path.join(tmp, "tflite_src"))
        for q in quantizations:
            gen = convert(src, GENERATOR_SIGNATURES, q)
            cls = convert(src, CLASSIFIER_SIGNATURES, q)
            entry = {"generator_bytes": len(gen), "classifier_bytes": len(cls)}
            if check:
                entry["max_abs_diff"] = parity(model.latent_space, gen, cls, loaded)
            for name, data in (("generator", gen), ("classifier", cls)):
                with open(os.path.join(out_dir, f"{name}_{q}.tflite"), "wb") as f:
                    f.write(data)
            report[q] = entry
    with open(os.path.join(out_dir, "tflite_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, "model_info.json"), "w") as f:  # the latent spec, for the sample CLI
        json.dump(serving.model_info(model), f, indent=2)
    return report
