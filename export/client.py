"""Client for an exported ss-InfoGAN model, for use from other applications.

Needs only TensorFlow for a local SavedModel (`LocalModel`), or only the Python standard library for a
model server's REST API (`RestModel`). It does not import tf_ssinfogan: copy this file into your app.

  # local SavedModel (TensorFlow installed):
  python client.py --model /models/ssinfogan/1 --signature sample --code digit=3 --num 16 --out digits.png
  python client.py --model /models/ssinfogan/1 --signature traverse --code c1 --num 10 --out c1.png
  python client.py --model /models/ssinfogan/1 --signature classify_uint8 --image digit.png
  python client.py --model /models/ssinfogan/1 --signature accuracy --npz mnist.npz   # classify_uint8's accuracy
  # TF Serving REST (standard library only):
  python client.py --rest http://localhost:8501/v1/models/ssinfogan --signature sample --code digit=3 --out d.png

  from client import LocalModel
  m = LocalModel("/models/ssinfogan/1")
  out = m.sample(16, seed=1, digit=3)          # {'images_uint8': [16, 28, 28, 1], 'digit': ..., 'noise': ...}
  m.generate(**{k: out[k] for k in m.codes()})  # the same images from the codes used
  m.classify(images_float)                     # {'digit': class, 'digit_probs': ..., 'c1': ..., ...}

Signatures (see docs/serving.md): serving_default (noise + each code -> images), sample (batch_size, seed,
'<code>' + '<code>_fixed' -> images + codes used), traverse (code, steps, rows, seed -> grid), classify /
classify_uint8 (images -> Q's code predictions).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import urllib.error
import urllib.request
import zlib


# ----------------------------------------------------------------------------------------------- helpers
def write_png(path, pixels):
    """Writes nested lists / an array [H, W, C] (C = 1 or 3) of uint8 as PNG (standard library only)."""
    rows = [[[int(v) for v in px] if hasattr(px, "__len__") else [int(px)] for px in row] for row in
            (pixels.tolist() if hasattr(pixels, "tolist") else pixels)]
    h, w, c = len(rows), len(rows[0]), len(rows[0][0])
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in rows)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
    return path


def tile(images, cols):
    """[N, H, W, C] nested lists -> one [rows*H, cols*W, C] grid (pads with black)."""
    images = images.tolist() if hasattr(images, "tolist") else images
    n, h, w, c = len(images), len(images[0]), len(images[0][0]), len(images[0][0][0])
    rows = -(-n // cols)
    black = [[[0] * c for _ in range(w)] for _ in range(h)]
    grid = []
    for r in range(rows):
        for y in range(h):
            line = []
            for k in range(cols):
                i = r * cols + k
                line.extend((images[i] if i < n else black)[y])
            grid.append(line)
    return grid


def short_error(e):
    """The useful part of an error: for a failed in-graph check, "input '<name>': <problem>"."""
    text = str(e).replace("\\'", "'")
    i = text.find("input '")
    if i < 0:
        return f"{type(e).__name__}: {text.strip()}"
    text = text[i:]
    ends = [j for j in (text.find("] ["), text.find("]\n")) if j >= 0]
    return text[:min(ends)] if ends else text


def parse_fixed(items):
    """['digit=3', 'c1=0.5', 'c2=0.1,0.2'] -> {'digit': '3', ...} (values converted per signature later)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--code {item!r}: expected name=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def sample_inputs(spec, batch_size, seed, fixed):
    """`sample` inputs for a signature whose inputs are `spec` {name: dtype string}."""
    codes = [k[:-len("_fixed")] for k in spec if k.endswith("_fixed")]
    unknown = sorted(set(fixed) - set(codes))
    if unknown:
        raise ValueError(f"unknown code(s) {unknown}; the codes are {codes}")
    inputs = {"batch_size": int(batch_size), "seed": int(seed)}
    for code in codes:
        is_int = spec[code].startswith("int")
        if code in fixed:
            v = fixed[code]
            value = int(v) if is_int else [float(x) for x in str(v).split(",")]
        else:
            value = 0 if is_int else [0.0] * spec[code + "_width"]
        inputs[code], inputs[code + "_fixed"] = value, code in fixed
    return inputs


# ----------------------------------------------------------------------------------------------- models
class _Signatures:
    """The signatures by name; subclasses provide `call(signature, **inputs)` and `_spec_strings()`."""

    def sample(self, batch_size, seed=0, **fixed):
        return self.call("sample", **sample_inputs(self._spec_strings(), batch_size, seed, fixed))

    def generate(self, **codes):
        return self.call("serving_default", **codes)

    def traverse(self, code, steps=10, rows=1, seed=0):
        return self.call("traverse", code=code, steps=steps, rows=rows, seed=seed)

    def classify(self, images):
        return self.call("classify", images=images)

    def classify_uint8(self, images):
        return self.call("classify_uint8", images=images)


class LocalModel(_Signatures):
    """A SavedModel loaded in-process with TensorFlow (no tf_ssinfogan needed)."""

    def __init__(self, path):
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(path)
        self.signatures = self.loaded.signatures

    def inputs(self, signature):
        return self.signatures[signature].structured_input_signature[1]

    def codes(self):
        return list(self.inputs("serving_default"))

    def call(self, signature, **inputs):
        specs = self.inputs(signature)
        missing = sorted(set(specs) - set(inputs))
        if missing:
            raise ValueError(f"signature {signature!r}: missing inputs {missing}")
        feed = {k: self.tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in self.signatures[signature](**feed).items()}

    def _spec_strings(self):
        specs = self.inputs("sample")
        out = {k: s.dtype.name for k, s in specs.items()}
        out.update({k + "_width": int(s.shape[0]) for k, s in specs.items() if s.shape.rank == 1})
        return out


class RestModel(_Signatures):
    """A model served by TF Serving's REST API (`<host>:8501/v1/models/<name>`), standard library only."""

    def __init__(self, url, timeout=60.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def metadata(self):
        with urllib.request.urlopen(self.url + "/metadata", timeout=self.timeout) as r:
            return json.load(r)

    def call(self, signature, **inputs):
        inputs = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in inputs.items()}
        body = json.dumps({"signature_name": signature, "inputs": inputs}).encode()
        req = urllib.request.Request(self.url + ":predict", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.load(r)["outputs"]
        except urllib.error.HTTPError as e:  # the server's {"error": "..."} names the bad input
            try:
                message = json.load(e).get("error", "")
            except ValueError:
                message = ""
            raise RuntimeError(f"HTTP {e.code} from {self.url}: {message or e.reason}") from None

    def _spec_strings(self):
        sig = self.metadata()["metadata"]["signature_def"]["signature_def"]["sample"]["inputs"]
        dtypes = {"DT_INT32": "int32", "DT_FLOAT": "float32", "DT_BOOL": "bool"}
        out = {k: dtypes.get(v["dtype"], v["dtype"]) for k, v in sig.items()}
        shapes = {k: v.get("tensor_shape", v.get("tensorShape", {})).get("dim", []) for k, v in sig.items()}
        out.update({k + "_width": int(dims[0]["size"]) for k, dims in shapes.items() if len(dims) == 1})
        return out


def classify_accuracy(model, npz_path, batch=500):
    """The classify_uint8 signature's accuracy on an npz's x_test / y_test (needs numpy), for every output that
    predicts a class (an integer per image); images whose label is negative are not counted."""
    import numpy as np

    with np.load(npz_path) as data:
        x, y = data["x_test"], np.asarray(data["y_test"]).reshape(-1)
    x = x[..., None] if x.ndim == 3 else x
    hits, counted = {}, int(np.sum(y >= 0))
    for i in range(0, len(x), batch):
        out = model.classify_uint8(x[i:i + batch])
        for name, value in out.items():
            value = np.asarray(value)
            if value.ndim == 1 and np.issubdtype(value.dtype, np.integer):
                known = y[i:i + batch] >= 0
                hits[name] = hits.get(name, 0) + int(np.sum((value == y[i:i + batch]) & known))
    return {"examples": counted, **{name: h / max(counted, 1) for name, h in hits.items()}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="SavedModel version folder (needs TensorFlow)")
    src.add_argument("--rest", help="TF Serving REST URL, e.g. http://localhost:8501/v1/models/ssinfogan")
    p.add_argument("--signature", default="sample",
                   choices=["sample", "traverse", "classify_uint8", "accuracy", "signatures"])
    p.add_argument("--code", action="append", help="sample: name=value (repeat); traverse: the code name")
    p.add_argument("--num", type=int, default=16, help="sample: batch size; traverse: steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", help="classify_uint8: a PNG file (local mode)")
    p.add_argument("--npz", help="accuracy: an npz with x_test (uint8) and y_test (class; -1 = unknown)")
    p.add_argument("--out", help="PNG output (sample, traverse)")
    a = p.parse_args(argv)
    try:
        model = LocalModel(a.model) if a.model else RestModel(a.rest)
        if a.signature == "signatures":
            if a.model:
                print(json.dumps({k: {n: [s.dtype.name, s.shape.as_list()] for n, s in model.inputs(k).items()}
                                  for k in model.signatures}, indent=1))
            else:
                print(json.dumps(model.metadata(), indent=1))
            return 0
        if a.signature == "accuracy":
            if not a.npz:
                raise ValueError("accuracy needs --npz PATH (x_test, y_test)")
            print(json.dumps(classify_accuracy(model, a.npz)))
            return 0
        if a.signature == "sample":
            out = model.sample(a.num, a.seed, **parse_fixed(a.code))
            grid = tile(out["images_uint8"], min(a.num, 8))
        elif a.signature == "traverse":
            if not a.code:
                raise ValueError("traverse needs --code NAME")
            out = model.traverse(a.code[0], a.num, 1, a.seed)
            grid = out["grid_uint8"]
        else:
            import tensorflow as tf

            img = tf.io.decode_png(tf.io.read_file(a.image)).numpy()[None]
            out = model.classify_uint8(img)
            print(json.dumps({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in out.items()}))
            return 0
        if a.out:
            write_png(a.out, grid)
            print(a.out)
        return 0
    except Exception as e:  # noqa: BLE001 - a CLI: report and exit non-zero
        print(f"error: {short_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
