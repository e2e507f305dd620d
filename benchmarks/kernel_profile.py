"""Which kernels a training step really runs, in which data type, and their share of the step's time.

  python benchmarks/kernel_profile.py --arch=mnist,dcgan32 --precision=mixed_bfloat16
  python benchmarks/kernel_profile.py --arch=mnist --precision=float32,mixed_bfloat16 --steps=3

For each case it runs the package's default step (benchmarks/train_step.py's `default` variant, batch 128) in a
child process twice:
  * with ONEDNN_VERBOSE=1: every oneDNN primitive executed in the timed steps (convolutions forward, backward
    data = transposed convolutions and conv gradients, backward weights; matmuls / inner products; reorders),
    grouped by kind, implementation, data type and shape, with its share of the oneDNN time;
  * under the TF profiler: every TF op's self time grouped as oneDNN ops, Cast (forward / gradient), the
    BatchNorm's elementwise ops, Adam, and the rest by op type.
Times are wall-clock per op; with inter-op parallelism two ops may overlap, so shares are of the summed op
time, not of the step. Compare precisions in one run (shared machines make absolute times noisy).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MARK, END = "=====timed steps=====", "=====end====="


def child(arch, precision, steps, batch, profile_dir):
    """Runs the steps in this process; between MARK and END on stdout are the timed steps."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, HERE)
    import tensorflow as tf

    import train_step as bench

    bench._register_32x32()
    model, data = bench.build_case(arch, batch, precision)
    step = tf.function(model.train_step)
    for _ in range(3):
        step(data)
    float(step(data)["d_loss"])
    if profile_dir:
        tf.profiler.experimental.start(profile_dir)
    print(MARK, flush=True)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(data)
    float(out["d_loss"])
    dt = (time.perf_counter() - t0) / steps
    print(END, flush=True)
    if profile_dir:
        tf.profiler.experimental.stop()
    print(json.dumps({"step_ms": round(dt * 1e3, 1)}), flush=True)


def onednn_table(log: str):
    """[(kind, impl, prop, dtype, shape, calls, ms)] of the oneDNN primitives executed between the marks."""
    timed = log.split(MARK, 1)[1].split(END, 1)[0]
    agg = collections.defaultdict(lambda: [0, 0.0])
    for line in timed.splitlines():
        if not line.startswith("onednn_verbose") or ",exec," not in line:
            continue
        f = line.split(",")
        kind, impl, prop, mem = f[5], f[6], f[7], f[8]
        m = re.search(r"(?:src|diff_dst)[^:]*:(\w+)", mem)
        dtype = m.group(1) if m else "?"  # the gemm_api lines of float32 matmuls carry no memory descriptors
        if kind == "gemm_api":
            dtype = "f32"
        key = (kind, impl, prop, dtype, "" if kind == "reorder" else f[-2])
        agg[key][0] += 1
        agg[key][1] += float(f[-1])
    return sorted(((*k, n, ms) for k, (n, ms) in agg.items()), key=lambda r: -r[-1])


def tf_op_groups(xplane: str):
    """{group: self-time microseconds} from the TF profiler's framework op statistics."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    raw, _ = plugin.xspace_to_tools_data([xplane], "framework_op_stats", {})
    table = json.loads(raw)[0]
    cols = [c["id"] for c in table["cols"]]
    groups = collections.defaultdict(float)
    for r in table["rows"]:
        row = dict(zip(cols, [c.get("v") if c else None for c in r["c"]]))
        op, name = row["type"], row["operation"]
        if row["host_or_device"] != "Host" or op == "IDLE":
            continue
        if op.startswith("_Mkl"):
            key = "oneDNN " + op.replace("_MklNative", "").replace("_Mkl", "")
        elif op == "Cast":
            key = "Cast (gradient)" if name.startswith("gradient_tape/") else "Cast (forward)"
        elif re.search(r"/(bn\d*|q_us_bn)[_/]|batchnorm|moments", name):
            key = "BatchNorm elementwise ops"
        elif "Adam" in op:
            key = "Adam (" + op + ")"
        else:
            key = "other " + op
        groups[key] += row["total_self_time"]
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def run_child(arch, precision, steps, batch, verbose, profile_dir=""):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if verbose:
        env["ONEDNN_VERBOSE"] = "1"
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", f"--arch={arch}", f"--precision={precision}",
           f"--steps={steps}", f"--batch={batch}", f"--_profile_dir={profile_dir}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mnist,dcgan32")
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--top", type=int, default=14, help="oneDNN rows printed per case")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_profile_dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        return child(args.arch, args.precision, args.steps, args.batch, args._profile_dir)
    print(f"# machine: {_cpu()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    for arch in args.arch.split(","):
        for precision in args.precision.split(","):
            log = run_child(arch, precision, args.steps, args.batch, verbose=True)
            rows = onednn_table(log)
            total = sum(r[-1] for r in rows)
            by_dtype = collections.defaultdict(float)
            for r in rows:
                by_dtype[r[3]] += r[-1]
            print(f"\n## {arch} {precision}, batch {args.batch}, {args.steps} steps: oneDNN {total:.0f} ms in all; "
                  "by data type " + ", ".join(f"{k} {v / total:.0%}" for k, v in by_dtype.items()), flush=True)
            print(f"{'share':>6} {'ms':>8} {'calls':>5}  kind / implementation / propagation / dtype / shape")
            for kind, impl, prop, dtype, shape, n, ms in rows[:args.top]:
                print(f"{ms / total:6.1%} {ms:8.1f} {n:5d}  {kind} {impl} {prop} {dtype} {shape}")
            with tempfile.TemporaryDirectory() as tmp:
                out = run_child(arch, precision, args.steps, args.batch, verbose=False, profile_dir=tmp)
                step_ms = json.loads(out.strip().splitlines()[-1])["step_ms"]
                groups = tf_op_groups(sorted(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True))[-1])
            total = sum(groups.values())
            print(f"TF ops (profiled step {step_ms} ms): " + "; ".join(
                f"{k} {v / total:.1%}" for k, v in list(groups.items())[:12]), flush=True)


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        name = re.search(r"model name\s*:\s*(.*)", text).group(1)
        family = re.search(r"cpu family\s*:\s*(\d+)", text).group(1)
        bf16 = "avx512_bf16" in text or "amx_bf16" in text
        return f"{name} (CPU family {family}), {os.cpu_count()} logical CPUs, native bf16: {bf16}"
    except (OSError, AttributeError):
        return "unknown CPU"


if __name__ == "__main__":
    main()
