"""Generator latency: SavedModel `serving_default` vs TFLite (LiteRT) float32 / float16 / int8, batch 1 and 64.

  python benchmarks/export_latency.py                       # untrained reference MNIST networks
  python benchmarks/export_latency.py --run_dir=runs/mnist  # a trained run (latency does not depend on it)

  python benchmarks/export_latency.py --threads=1,2 --xnnpack=on,off --batches=1 --iters=300

Prints the hardware, each TFLite model's ops (with the dtype of their weights: an int8 model's hybrid ops show
int8), then p50 / p99 milliseconds per call for each model, thread count and XNNPACK on/off. XNNPACK takes
the ops it supports; `--xnnpack=off` (the builtin kernels only) shows which models it runs: where on and off
time alike, the model's heavy ops fall back to the builtin kernels. The weights do not change the cost, so by
default the untrained reference networks are used. Timings on a shared machine vary: compare within one run.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Training run to export; default: untrained reference networks.")
flags.DEFINE_list("batches", ["1", "64"], "Batch sizes.")
flags.DEFINE_integer("iters", 100, "Timed calls per case (after 5 warm-up calls).")
flags.DEFINE_list("threads", ["0"], "LiteRT interpreter threads, one case per value; 0 = its default.")
flags.DEFINE_list("xnnpack", ["on"], "LiteRT with its default XNNPACK delegate (on) and/or the builtin kernels "
                  "alone (off), one case per value.")
flags.DEFINE_list("quantizations", ["float32", "float16", "int8"], "TFLite models to time.")
flags.DEFINE_bool("ops", True, "Print each TFLite model's ops (type, count, weight dtype).")
flags.DEFINE_bool("fixed_batch", True, "Also time generators converted for exactly each batch size (static "
                  "shapes: XNNPACK then takes every op, tflite.convert_fixed_batch).")
flags.DEFINE_bool("layer_profile", False, "Also time each Dense / transposed-convolution layer of the generator "
                  "alone, as a one-layer TFLite model per quantisation, XNNPACK on and off, at batch 1: which op "
                  "costs what, and which falls back from XNNPACK.")


def hardware() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import ai_edge_litert
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (f"{cpu}; {os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.1f}; GPUs: {len(gpus)}; "
            f"TensorFlow {tf.__version__}; ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}; "
            f"Python {platform.python_version()}")


def percentiles(fn, iters):
    import numpy as np

    for _ in range(5):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv):
    del argv
    import tensorflow as tf
    from absl import logging

    logging.set_verbosity(logging.WARNING)

    from tf_ssinfogan import config as C
    from tf_ssinfogan.serving import tflite
    from tf_ssinfogan.serving import saved_model
    from tf_ssinfogan.model.ssinfogan import SSInfoGAN

    print("hardware:", hardware())
    model = saved_model.restore_run(FLAGS.run_dir) if FLAGS.run_dir else SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 8)
    with tempfile.TemporaryDirectory() as tmp:
        path = saved_model.export_saved_model(model, tmp)
        fn = tf.saved_model.load(path).signatures[saved_model.SERVING_DEFAULT]
        src = tflite.write_tflite_saved_model(model, os.path.join(tmp, "tflite_src"))
        models = {q: tflite.convert(src, tflite.GENERATOR_SIGNATURES, q) for q in FLAGS.quantizations}
        if FLAGS.ops:
            for q, data in models.items():
                print(f"ops of TFLite {q}: {op_summary(data)}")
        interps = {}
        for q, data in models.items():
            for threads in [int(t) for t in FLAGS.threads]:
                for xnn in FLAGS.xnnpack:
                    interps[f"TFLite {q} ({len(data) / 1e6:.1f} MB) t{threads or 'd'} x{xnn}"] = \
                        litert(data, threads, xnn == "on")
        print(f"{'model':<36}{'batch':>6}{'p50 ms':>10}{'p99 ms':>10}{'images/s (p50)':>16}{'max diff':>12}")
        for b in [int(x) for x in FLAGS.batches]:
            latents = tflite.fixed_latents(model.latent_space, b)
            feed = {k: tf.constant(v) for k, v in latents.items()}
            p50, p99 = percentiles(lambda: fn(**feed)["images"].numpy(), FLAGS.iters)
            print(f"{'SavedModel':<36}{b:>6}{p50:>10.2f}{p99:>10.2f}{b / p50 * 1e3:>16.0f}")
            fixed = {}
            if FLAGS.fixed_batch:
                for q in FLAGS.quantizations:
                    data = tflite.convert_fixed_batch(model, b, q)
                    for threads in [int(t) for t in FLAGS.threads]:
                        for xnn in FLAGS.xnnpack:
                            fixed[f"TFLite {q} batch {b} only t{threads or 'd'} x{xnn}"] = litert(data, threads,
                                                                                                xnn == "on")
            reference = fn(**feed)["images"].numpy()
            for name, interp in {**interps, **fixed}.items():
                run = fixed_runner(interp, latents) if name in fixed else \
                    (lambda r=interp.get_signature_runner(saved_model.SERVING_DEFAULT): r(**latents)["images"])
                p50, p99 = percentiles(run, FLAGS.iters)
                diff = float(np.abs(np.asarray(run()) - reference).max())
                print(f"{name:<36}{b:>6}{p50:>10.2f}{p99:>10.2f}{b / p50 * 1e3:>16.0f}{diff:>12.1e}")
    if FLAGS.layer_profile:
        layer_profile(model, FLAGS.quantizations, int(FLAGS.threads[0]), FLAGS.iters)


def layer_profile(model, quantizations, threads, iters):
    """p50 ms at batch 1 of each weighted generator layer alone, converted as a one-layer TFLite model."""
    import keras
    import numpy as np
    import tensorflow as tf

    print(f"{'layer (alone, batch 1)':<44}" + "".join(f"{q + ' x' + x:>14}" for q in quantizations
                                                      for x in ("on", "off")))
    x = keras.ops.zeros((1, model.generator.latent_dim))
    for layer in model.generator.blocks:
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2DTranspose)):
            single = keras.Sequential([keras.Input(x.shape[1:], batch_size=1), layer.__class__.from_config(
                layer.get_config())])
            single.layers[-1].set_weights(layer.get_weights())
            converter = tf.lite.TFLiteConverter.from_keras_model(single)
            cells = []
            for q in quantizations:
                converter.optimizations = [tf.lite.Optimize.DEFAULT] if q != "float32" else []
                converter.target_spec.supported_types = [tf.float16] if q == "float16" else []
                data = converter.convert()
                feed = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
                for xnn in (True, False):
                    interp = litert(data, threads, xnn)
                    interp.allocate_tensors()
                    index = interp.get_input_details()[0]["index"]

                    def call():
                        interp.set_tensor(index, feed)
                        interp.invoke()
                    cells.append(percentiles(call, iters)[0])
            name = f"{layer.name} {type(layer).__name__} {tuple(x.shape[1:])}->{tuple(layer(x).shape[1:])}"
            print(f"{name:<44}" + "".join(f"{c:>14.3f}" for c in cells), flush=True)
        x = layer(x, training=False) if isinstance(layer, keras.layers.BatchNormalization) else layer(x)


def fixed_runner(interp, latents):
    """A call of a fixed-batch model (no signature: its inputs are named after the latents) -> images."""
    interp.allocate_tensors()
    names = {d["index"]: next(k for k in latents if d["name"] == k or d["name"].endswith("_" + k) or
                              d["name"].split(":")[0] == k) for d in interp.get_input_details()}
    (out,) = [d["index"] for d in interp.get_output_details() if d["dtype"] == np.float32]

    def call():
        for index, key in names.items():
            interp.set_tensor(index, latents[key])
        interp.invoke()
        return interp.get_tensor(out)
    return call


def litert(data: bytes, threads: int, xnnpack: bool):
    """A LiteRT interpreter of `data`: `threads` (0 = default), with or without the default XNNPACK delegate."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=data, num_threads=threads or None, experimental_op_resolver_type=resolver)


def op_summary(data: bytes) -> str:
    """'OP x count [weight dtypes]' of the ops of every subgraph of a TFLite model."""
    import collections

    interp = litert(data, 1, xnnpack=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    counts = collections.Counter()
    for op in interp._get_ops_details():  # LiteRT's op listing (the analyzer's data)
        # the weights: constant inputs beyond the first (data) input; their dtype tells hybrid int8 ops apart
        weights = sorted({tensors[i]["dtype"].__name__ for i in op["inputs"][1:] if i in tensors
                          and len(tensors[i]["shape"]) >= 2 and tensors[i]["shape_signature"][0] != -1})
        counts[f"{op['op_name']}[{'/'.join(weights)}]" if weights else op["op_name"]] += 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))

if __name__ == "__main__":
    app.run(main)
