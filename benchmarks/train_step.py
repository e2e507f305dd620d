"""Training-step throughput of the ss-InfoGAN networks: images/s, step time, FLOPs and FLOP/s utilisation.

  python benchmarks/train_step.py                          # MNIST reference nets, batch 64/128/256, XLA off/on
  python benchmarks/train_step.py --arch=mnist --batch=128 --precision=float32,mixed_bfloat16 --steps=30

Prints the hardware, a dense-matmul peak measured in the same run (float32 and bfloat16), then one JSON line
per case: {arch, batch, xla, precision, replicas, step_ms, images_per_s, mflop_per_image, gflop_per_s,
utilisation_vs_fp32_peak}. The step is the model's own `train_step` on a fixed in-memory batch (the input
pipeline is measured separately in benchmarks/input_pipeline.py). FLOPs are counted by the TF profiler on the
step's graph (forward and backward of both phases).
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_ssinfogan import config as C  # noqa: E402
from tf_ssinfogan.model import SSInfoGAN  # noqa: E402

ARCHS = {
    "mnist": (C.NetworkConfig(), C.LatentConfig()),
}


def _register_32x32():
    try:
        from tf_ssinfogan import networks
    except ImportError:
        return
    if "infogan32" in networks.ARCHITECTURES:
        ARCHS["infogan32"] = (
            C.NetworkConfig(architecture="infogan32", image_shape=(32, 32, 3), output_activation="tanh"),
            C.LatentConfig(noise_dim=124, codes=C.parse_codes("digit:cat:10:label,u1:cat:10,u2:cat:10,c1:cont:4")),
        )


def hardware():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version()}


def matmul_peak(dtype, n=2048, reps=10):
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.numpy()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def count_flops(concrete):
    from tensorflow.python.profiler import model_analyzer, option_builder

    opts = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    opts = opts.with_empty_output().build()
    return model_analyzer.profile(graph=concrete.graph, options=opts).total_float_ops


def run_case(arch, batch, xla, precision, steps, warmup, reuse_fakes=False, replicas=1):
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    network, latent = ARCHS[arch]
    model = SSInfoGAN(latent, network, batch, reuse_fakes=reuse_fakes)
    model.compile()
    h, w, c = network.image_shape
    images = tf.random.uniform([batch, h, w, c])
    labels = {code.label: tf.zeros([batch], tf.int64) if code.kind == "categorical" else tf.zeros([batch, code.dim])
              for code in latent.semi_supervised_codes}
    mask = tf.ones([batch])
    step = tf.function(model.train_step, jit_compile=xla)
    flops = None
    try:
        flops = count_flops(tf.function(model.train_step).get_concrete_function((images, labels, mask)))
    except Exception as e:  # the profiler is best-effort
        print(f"# flop count failed: {e}", file=sys.stderr)
    for _ in range(warmup):
        out = step((images, labels, mask))
    float(out["d_loss"])
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step((images, labels, mask))
    float(out["d_loss"])
    dt = (time.perf_counter() - t0) / steps
    keras.mixed_precision.set_global_policy("float32")
    return dt, flops


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mnist")
    p.add_argument("--batch", default="64,128,256")
    p.add_argument("--xla", default="off,on")
    p.add_argument("--precision", default="float32")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    _register_32x32()
    print("# hardware:", json.dumps(hardware()))
    peak32, peak16 = matmul_peak(tf.float32), matmul_peak(tf.bfloat16)
    print(f"# dense matmul 2048^3 peak: float32 {peak32:.1f} GFLOP/s, bfloat16 {peak16:.1f} GFLOP/s")
    for arch in args.arch.split(","):
        for precision in args.precision.split(","):
            for batch in [int(b) for b in args.batch.split(",")]:
                for xla in [x == "on" for x in args.xla.split(",")]:
                    try:
                        dt, flops = run_case(arch, batch, xla, precision, args.steps, args.warmup)
                    except Exception as e:
                        print(json.dumps({"arch": arch, "batch": batch, "xla": xla, "precision": precision,
                                          "error": str(e).splitlines()[0][:200]}))
                        continue
                    rec = {"arch": arch, "batch": batch, "xla": xla, "precision": precision, "replicas": 1,
                           "step_ms": round(dt * 1e3, 2), "images_per_s": round(batch / dt, 1)}
                    if flops:
                        rec["mflop_per_image"] = round(flops / batch / 1e6, 1)
                        rec["gflop_per_s"] = round(flops / dt / 1e9, 1)
                        rec["utilisation_vs_fp32_peak"] = round(flops / dt / 1e9 / peak32, 3)
                    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
