"""Generator latency: SavedModel `serving_default` vs TFLite (LiteRT) float32 / float16 / int8, batch 1 and 64.

  python benchmarks/export_latency.py                       # untrained reference MNIST networks
  python benchmarks/export_latency.py --run_dir=runs/mnist  # a trained run (latency does not depend on it)

Prints the hardware, then p50 / p99 milliseconds per call. The weights do not change the cost, so by default
the untrained reference networks are used. Timings on a shared machine vary: compare within one run.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Training run to export; default: untrained reference networks.")
flags.DEFINE_list("batches", ["1", "64"], "Batch sizes.")
flags.DEFINE_integer("iters", 100, "Timed calls per case (after 5 warm-up calls).")
flags.DEFINE_integer("threads", 0, "LiteRT interpreter threads; 0 = its default.")


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
        interps = {}
        for q in tflite.QUANTIZATIONS:
            from ai_edge_litert.interpreter import Interpreter

            data = tflite.convert(src, tflite.GENERATOR_SIGNATURES, q)
            interps[q] = (Interpreter(model_content=data, num_threads=FLAGS.threads or None), len(data))
        print(f"{'model':<28}{'batch':>6}{'p50 ms':>10}{'p99 ms':>10}{'images/s (p50)':>16}")
        for b in [int(x) for x in FLAGS.batches]:
            latents = tflite.fixed_latents(model.latent_space, b)
            feed = {k: tf.constant(v) for k, v in latents.items()}
            p50, p99 = percentiles(lambda: fn(**feed)["images"].numpy(), FLAGS.iters)
            print(f"{'SavedModel':<28}{b:>6}{p50:>10.2f}{p99:>10.2f}{b / p50 * 1e3:>16.0f}")
            for q, (interp, size) in interps.items():
                runner = interp.get_signature_runner(saved_model.SERVING_DEFAULT)
                p50, p99 = percentiles(lambda: runner(**latents)["images"], FLAGS.iters)
                name = f"TFLite {q} ({size / 1e6:.1f} MB)"
                print(f"{name:<28}{b:>6}{p50:>10.2f}{p99:>10.2f}{b / p50 * 1e3:>16.0f}")


if __name__ == "__main__":
    app.run(main)
