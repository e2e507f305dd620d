"""Latent explorer latency: one image update (`/api/image`) and a grid (`/api/grid`), end to end over HTTP.

  python benchmarks/explore_latency.py                                  # untrained mnist, infogan32, dcgan32
  python benchmarks/explore_latency.py --model=runs/quickstart --untrained=infogan32,dcgan32

Each model is served by the explorer (`tf_ssinfogan.serving.explorer`, in this process, on 127.0.0.1) and asked from a
keep-alive HTTP connection, as the page does: `--iters` image requests with a continuous code moving over the
slider's range (the time to the complete JSON answer with the PNG: parsing, the `sample` signature, PNG encoding,
base64), then grids of `--grid` (steps x rows). "burst": `--burst` requests of one client sent at once, with
increasing sequence numbers, as requests that arrive while one is served; reports how many were computed (the rest
are answered 204 without a model call) and the time until the newest one's image is back. The weights do not
change the cost, so untrained networks stand in for trained ones. Prints the machine first (`lscpu` model name and
CPU family); timings on a shared machine vary: compare within one run.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled

FLAGS = flags.FLAGS
flags.DEFINE_list("model", [], "Exports to time (version folder, its parent or a run folder).")
flags.DEFINE_list("untrained", ["mnist", "infogan32", "dcgan32"], "Untrained networks to export and time: "
                  "mnist (configs/mnist.flags' spec), infogan32 (configs/colour_digits.flags'), dcgan32 "
                  "(configs/cifar.flags').")
flags.DEFINE_integer("iters", 200, "Timed image requests per model (after 10 warm-up requests).")
flags.DEFINE_list("grid", ["7", "4"], "Grid steps,rows.")
flags.DEFINE_integer("grid_iters", 20, "Timed grid requests per model.")
flags.DEFINE_integer("burst", 8, "Requests per burst (0: no burst test).")
flags.DEFINE_integer("bursts", 20, "Bursts per model.")

SPECS = {  # (architecture, image shape, output activation, noise dim, noise distribution, codes)
    "mnist": ("mnist", (28, 28, 1), "sigmoid", 62, "normal", "digit:cat:10:label,c1:cont:1,c2:cont:1"),
    "infogan32": ("infogan32", (32, 32, 3), "tanh", 124, "uniform",
                  "digit:cat:10:label,fg:cat:5:fg,bg:cat:3:bg,c1:cont:1,c2:cont:1"),
    "dcgan32": ("dcgan32", (32, 32, 3), "tanh", 100, "normal", "object:cat:10:label,c1:cont:1,c2:cont:1,c3:cont:1,"
                "c4:cont:1"),
}


def machine() -> str:
    fields = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    except (OSError, subprocess.SubprocessError):
        pass
    import tensorflow as tf

    return (f"{fields.get('Model name', platform.processor() or '?')} (CPU family {fields.get('CPU family', '?')}); "
            f"{os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.1f}; "
            f"GPUs: {len(tf.config.list_physical_devices('GPU'))}; TensorFlow {tf.__version__}; "
            f"Python {platform.python_version()}")


def export_untrained(name: str, base: str) -> str:
    from tf_ssinfogan import config as C
    from tf_ssinfogan.serving import saved_model
    from tf_ssinfogan.model.ssinfogan import SSInfoGAN

    arch, shape, activation, noise_dim, noise, codes = SPECS[name]
    latent = C.LatentConfig(noise_dim=noise_dim, noise_distribution=noise, codes=C.parse_codes(codes))
    network = C.NetworkConfig(architecture=arch, image_shape=shape, output_activation=activation)
    return saved_model.export_saved_model(SSInfoGAN(latent, network, 8), os.path.join(base, name))


def percentiles(times_ms):
    import numpy as np

    return {"p50": round(float(np.percentile(times_ms, 50)), 2), "p95": round(float(np.percentile(times_ms, 95)), 2),
            "max": round(float(np.max(times_ms)), 2)}


def time_model(label: str, folder: str) -> dict:
    from tf_ssinfogan.serving import explorer

    ex = explorer.Explorer(folder)
    server = explorer.make_server(ex, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    cont = next((c for c in ex.info["codes"] if c["kind"] == "continuous"), None)
    cat = next((c for c in ex.info["codes"] if c["kind"] == "categorical"), None)

    def get(path, c=conn):
        t = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        ms = (time.perf_counter() - t) * 1e3
        if r.status not in (200, 204):
            raise RuntimeError(f"{path} -> {r.status} {body[:300]!r}")
        return ms, r.status, body

    def image_path(i, seq=None, client="bench"):
        q = f"/api/image?seed=7&client={client}&seq={i if seq is None else seq}"
        if cont:
            q += f"&{cont['name']}={-2 + 4 * (i % 101) / 100:.2f}"
        if cat:
            q += f"&{cat['name']}={(i // 101) % cat['dim']}"
        return q

    try:
        for i in range(10):
            get(image_path(i))
        image = [get(image_path(i))[0] for i in range(10, 10 + FLAGS.iters)]
        steps, rows = (int(v) for v in FLAGS.grid)
        code = cont["name"] if cont else ex.traverse_choices[0]
        grid_path = f"/api/grid?code={code}&steps={steps}&rows={rows}&seed=3"
        get(grid_path)
        grid = [get(grid_path)[0] for _ in range(FLAGS.grid_iters)]
        shape = json.loads(get(image_path(0, client="shape"))[2])["shape"]
        result = {"model": label, "image_shape": shape, "image_ms": percentiles(image),
                  f"grid_{steps}x{rows}_ms": percentiles(grid)}
        if FLAGS.burst:
            computed, newest = [], []
            seq = 10 ** 6
            for b in range(FLAGS.bursts):
                before = ex.computed
                conns = [http.client.HTTPConnection(host, port, timeout=60) for _ in range(FLAGS.burst)]
                out = [None] * FLAGS.burst
                start = time.perf_counter()

                def send(k):
                    out[k] = get(image_path(b * 7 + k, seq=seq + k, client="burst"), conns[k])

                threads = [threading.Thread(target=send, args=(k,)) for k in range(FLAGS.burst)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                newest.append((time.perf_counter() - start) * 1e3 if out[-1][1] == 200 else float("nan"))
                computed.append(ex.computed - before)
                seq += FLAGS.burst
                for c in conns:
                    c.close()
            result["burst"] = {"requests": FLAGS.burst, "computed_mean": round(sum(computed) / len(computed), 2),
                               "computed_max": max(computed), "newest_answered_ms": percentiles(newest)}
        return result
    finally:
        conn.close()
        server.shutdown()
        server.server_close()


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from tf_ssinfogan.serving import explorer

    print("# machine:", machine(), flush=True)
    cases = [(m, explorer.resolve_export(m)) for m in FLAGS.model]
    with tempfile.TemporaryDirectory() as tmp:
        cases += [(f"{name} (untrained)", export_untrained(name, tmp)) for name in FLAGS.untrained if name]
        for label, folder in cases:
            print(json.dumps(time_model(label, folder)), flush=True)


if __name__ == "__main__":
    app.run(main)
