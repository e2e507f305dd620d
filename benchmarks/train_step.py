"""Training-step throughput of the ss-InfoGAN networks: images/s, step time, FLOPs and FLOP/s utilisation.

  python benchmarks/train_step.py                          # MNIST nets, batch 128, every step variant, XLA off/on
  python benchmarks/train_step.py --batch=64,128,256 --variant=default --xla=off,on
  python benchmarks/train_step.py --precision=float32,mixed_bfloat16,mixed_float16 --replicas=1,2
  python benchmarks/train_step.py --steps_per_execution=1,10 --variant=default
  python benchmarks/train_step.py --arch=all --variant=default --precision=float32,mixed_bfloat16 --xla=off,on \
      --steps=4 --repeats=3                                  # every architecture: float32 vs bf16 vs XLA

Prints the hardware, a dense-matmul peak measured in the same run (float32 and bfloat16; again in each timed
round of an architecture, whose medians its shares of the peaks use), then one JSON line
per case: {arch, batch, variant, xla, precision, replicas, steps_per_execution, repeats, step_ms, images_per_s,
mflop_per_image, gflop_per_s, utilisation_vs_fp32_peak, utilisation_vs_bf16_peak, vs_float32}, and at the end a
Markdown table of them. The cases of one architecture are built first and then timed in turns, `--repeats`
rounds (medians reported), so that a changing load on a shared machine hits them alike; vs_float32 is the
images/s ratio to the same variant in float32 with XLA off, measured in the same rounds. The step is the model's own `train_step` on a fixed
in-memory batch (the input pipeline is measured separately in benchmarks/input_pipeline.py). FLOPs are counted
by the TF profiler on the step's graph (forward and backward of both phases).

Variants (compare them side by side in one run):
  baseline  fresh fakes for the G phase, keras.optimizers.Adam   (--noreuse_fakes)
  reuse     the G phase reuses the D phase's fakes, keras Adam   (the package default)
  fused     fresh fakes, FusedAdam                                (--noreuse_fakes --fused_adam)
  default   reuse + FusedAdam: the fastest                        (--fused_adam; FusedAdam reads Keras internals)
Replicas > 1 run MirroredStrategy over that many logical CPU devices, each case in a fresh process (so only
one strategy lives in a process); on a CPU they share the same cores, so this measures the strategy's
overhead, not a speed-up. XLA is skipped there (XLA with MirroredStrategy on logical CPUs fails).
steps_per_execution > 1 runs that many steps inside one tf.function call (what Keras's
`compile(steps_per_execution=...)` does), to show the per-call overhead.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_ssinfogan import config as C  # noqa: E402
from tf_ssinfogan.model.ssinfogan import SSInfoGAN  # noqa: E402

ARCHS = {
    "mnist": (C.NetworkConfig(), C.LatentConfig()),
}


def _register_32x32():
    try:
        from tf_ssinfogan.model import networks
    except ImportError:
        return
    if "infogan32" in networks.ARCHITECTURES:
        ARCHS["infogan32"] = (
            C.NetworkConfig(architecture="infogan32", image_shape=(32, 32, 3), output_activation="tanh"),
            C.LatentConfig(noise_dim=124, codes=C.parse_codes("digit:cat:10:label,u1:cat:10,u2:cat:10,c1:cont:4")),
        )
    if "dcgan32" in networks.ARCHITECTURES:  # configs/cifar.flags
        ARCHS["dcgan32"] = (
            C.NetworkConfig(architecture="dcgan32", image_shape=(32, 32, 3), output_activation="tanh",
                            leaky_relu_slope=0.2),
            C.LatentConfig(noise_dim=100, noise_distribution="normal",
                           codes=C.parse_codes("object:cat:10:label,c1:cont:1,c2:cont:1,c3:cont:1,c4:cont:1")),
        )
    if "dcgan64" in networks.ARCHITECTURES:  # configs/celeba64.flags
        ARCHS["dcgan64"] = (
            C.NetworkConfig(architecture="dcgan64", image_shape=(64, 64, 3), output_activation="tanh",
                            leaky_relu_slope=0.1),
            C.LatentConfig(noise_dim=128, noise_distribution="uniform", codes=C.parse_codes(
                "smile:bin:1:Smiling,male:bin:1:Male," + ",".join(f"cat{i}:cat:10" for i in range(1, 11)))),
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


VARIANTS = {  # variant: (reuse_fakes, fused_adam)
    "baseline": (False, False),
    "reuse": (True, False),
    "fused": (False, True),
    "default": (True, True),
}


def build_case(arch, batch, precision, variant="default"):
    """(compiled model, one in-memory batch) of a case on one device (benchmarks/kernel_profile.py uses it)."""
    from tf_ssinfogan.model.ssinfogan import precision_policy
    from tf_ssinfogan.model.optimizers import make_adam

    keras.utils.set_random_seed(0)
    network, latent = ARCHS[arch]
    reuse_fakes, fused_adam = VARIANTS[variant]
    with precision_policy(precision):
        model = SSInfoGAN(latent, network, batch, C.ObjectiveConfig(reuse_fakes=reuse_fakes))
    model.compile(d_optimizer=make_adam(1e-4, 0.5, 0.999, "d_adam", fused=fused_adam, precision=precision),
                  g_optimizer=make_adam(1e-3, 0.5, 0.999, "g_adam", fused=fused_adam, precision=precision))
    h, w, c = network.image_shape
    labels = {code.label: tf.zeros([batch], tf.int64) if code.kind == "categorical" else tf.zeros([batch, code.dim])
              for code in latent.semi_supervised_codes}
    return model, (tf.random.uniform([batch, h, w, c]), labels, tf.ones([batch]))


def prepare_case(arch, batch, xla, precision, steps, warmup, variant="default", replicas=1, steps_per_execution=1):
    """(timer, FLOPs per step) of one case, warmed up: timer() runs `steps` steps and returns seconds per step."""
    if replicas > 1:
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
    else:
        strategy = tf.distribute.get_strategy()
    with strategy.scope():  # as rundir.build_model: FusedAdam or keras Adam, dynamic loss scaling for float16
        model, (images, labels, mask) = build_case(arch, batch, precision, variant)
    flops = None
    if replicas == 1:
        try:
            flops = count_flops(tf.function(model.train_step).get_concrete_function((images, labels, mask)))
        except Exception as e:  # the profiler is best-effort
            print(f"# flop count failed: {e}", file=sys.stderr)
        data = (images, labels, mask)

        def one_step(batch_):
            return model.train_step(batch_)
    else:
        dataset = tf.data.Dataset.from_tensors((images, labels, mask)).repeat()
        data = iter(strategy.experimental_distribute_dataset(dataset))

        def one_step(iterator):
            strategy.run(model.train_step, args=(next(iterator),))

    @tf.function(jit_compile=xla)
    def step(batch_):
        for _ in range(steps_per_execution):  # unrolled: XLA compiles a tf.range loop over this step ~20x slower
            one_step(batch_)
        return model.tracked["d_loss"].result()

    calls = max(1, steps // steps_per_execution)
    for _ in range(max(1, warmup // steps_per_execution)):
        out = step(data)
    float(out)

    def timer():
        t0 = time.perf_counter()
        for _ in range(calls):
            out = step(data)
        float(out)
        return (time.perf_counter() - t0) / (calls * steps_per_execution)

    return timer, flops


def run_case(*args, **kwargs):
    """(seconds per step, FLOPs per step) of one case."""
    timer, flops = prepare_case(*args, **kwargs)
    return timer(), flops


def _csv(text, cast=str):
    return [cast(x) for x in text.split(",") if x]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mnist", help="comma-separated, or 'all' (every architecture in networks)")
    p.add_argument("--batch", default="128")
    p.add_argument("--variant", default="baseline,reuse,fused,default")
    p.add_argument("--xla", default="off,on")
    p.add_argument("--precision", default="float32")
    p.add_argument("--replicas", default="1")
    p.add_argument("--steps_per_execution", default="1")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1,
                   help="timed rounds over all cases of an architecture, in turns (medians are reported)")
    p.add_argument("--no_peak", action="store_true", help="skip the matmul peak (child processes)")
    args = p.parse_args()
    for v in _csv(args.variant):
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    replicas = _csv(args.replicas, int)
    if any(r > 1 for r in replicas) and len(replicas) > 1:
        # One process per replica count: one MirroredStrategy per process
        for r in replicas:
            cmd = [sys.executable, os.path.abspath(__file__)] + [a for a in sys.argv[1:] if not a.startswith("--replicas")]
            if r != replicas[0]:
                cmd.append("--no_peak")
            subprocess.run(cmd + [f"--replicas={r}"], check=False)
        return
    if replicas[0] > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas[0])
    _register_32x32()
    peak32 = peak16 = None
    print("# hardware:", json.dumps(hardware()), flush=True)
    if not args.no_peak:
        peak32, peak16 = matmul_peak(tf.float32), matmul_peak(tf.bfloat16)
        print(f"# dense matmul 2048^3 peak: float32 {peak32:.1f} GFLOP/s, bfloat16 {peak16:.1f} GFLOP/s", flush=True)
    archs = list(ARCHS) if args.arch == "all" else _csv(args.arch)
    rows = []
    for arch in archs:
        for batch in _csv(args.batch, int):
            for spe in _csv(args.steps_per_execution, int):
                # every case of this group is built first, then timed in turns (--repeats), medians reported
                cases = []
                for precision in _csv(args.precision):
                    for variant in _csv(args.variant):
                        for xla in [x == "on" for x in _csv(args.xla)]:
                            case = {"arch": arch, "batch": batch, "variant": variant, "xla": xla,
                                    "precision": precision, "replicas": replicas[0], "steps_per_execution": spe}
                            if xla and replicas[0] > 1:
                                continue
                            try:
                                timer, flops = prepare_case(arch, batch, xla, precision, args.steps, args.warmup,
                                                            variant, replicas[0], spe)
                            except Exception as e:
                                print(json.dumps(dict(case, error=str(e).splitlines()[0][:200])), flush=True)
                                continue
                            cases.append((case, timer, flops, []))
                peaks = {"float32": [], "bfloat16": []}  # measured in the same rounds: the same load
                for _ in range(args.repeats):
                    if not args.no_peak:
                        for name in peaks:
                            peaks[name].append(matmul_peak(getattr(tf, name), reps=3))
                    for _, timer, _, times in cases:
                        times.append(timer())
                if not args.no_peak:
                    peak32, peak16 = (float(np.median(v)) for v in peaks.values())
                    print(f"# matmul peak during the {arch} rounds (medians): float32 {peak32:.1f}, bfloat16 "
                          f"{peak16:.1f} GFLOP/s", flush=True)
                for case, _, flops, times in cases:
                    dt = float(np.median(times))
                    rec = dict(case, repeats=len(times), step_ms=round(dt * 1e3, 2), images_per_s=round(batch / dt, 1))
                    if flops:
                        rec["mflop_per_image"] = round(flops / batch / 1e6, 1)
                        rec["gflop_per_s"] = round(flops / dt / 1e9, 1)
                        if peak32:
                            rec["utilisation_vs_fp32_peak"] = round(flops / dt / 1e9 / peak32, 3)
                            rec["utilisation_vs_bf16_peak"] = round(flops / dt / 1e9 / peak16, 3)
                    ref = [c for c, _, _, t in cases if c["precision"] == "float32" and not c["xla"]
                           and c["variant"] == case["variant"]]
                    if ref:
                        ref_dt = float(np.median(cases[[c for c, *_ in cases].index(ref[0])][3]))
                        rec["vs_float32"] = round(ref_dt / dt, 2)
                    print(json.dumps(rec), flush=True)
                    rows.append(rec)
    if len(rows) > 1:
        print(f"\n# load average {os.getloadavg()[0]:.1f} (1 min) at the end")
        print("| arch | batch | variant | precision | XLA | step ms | images/s | GFLOP/s | of fp32 peak | of bf16 peak "
              "| vs float32 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            share = [f"{r[k]:.0%}" if k in r else "" for k in ("utilisation_vs_fp32_peak", "utilisation_vs_bf16_peak")]
            print(f"| {r['arch']} | {r['batch']} | {r['variant']} | {r['precision']} | {'on' if r['xla'] else 'off'} "
                  f"| {r['step_ms']} | {r['images_per_s']} | {r.get('gflop_per_s', '')} | {share[0]} | {share[1]} "
                  f"| {r.get('vs_float32', '')} |")

if __name__ == "__main__":
    main()
