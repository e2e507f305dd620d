"""Serving surface: SavedModel signatures (as TF Serving consumes them), export/sample CLIs, TFLite/LiteRT parity.

One tiny training run (MNIST reference networks, 4 steps of batch 8, real MNIST test images) per module; its
end-of-run export is the SavedModel under test. The TFLite models are those one `python -m tf_ssinfogan.export
--tflite` run writes. The CLI subprocesses (each loads TensorFlow) run concurrently (`cli_jobs`).
"""

import importlib.util
import json
import os
import re
import site
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import Jobs, tiny_config, tiny_source
from tf_ssinfogan.serving import tflite
from tf_ssinfogan.evaluation import report
from tf_ssinfogan.serving import saved_model
from tf_ssinfogan.training import trainer
from tf_ssinfogan.model.images import images_to_float
from tf_ssinfogan.data.sources import DEFAULT_NPZ, ArraySource

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT_ASSETS = os.path.join(ROOT, "export")
REQUESTS = os.path.join(EXPORT_ASSETS, "requests")
REQUEST_NAMES = ("serving_default", "sample", "traverse", "classify", "classify_uint8")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _body(name):
    with open(os.path.join(REQUESTS, f"{name}.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run (its training exported the SavedModel) whose test split is real MNIST."""
    with np.load(DEFAULT_NPZ) as f:
        x_test, y_test = f["x_test"][:300, :, :, None], f["y_test"][:300].astype(np.int64)
    tiny = tiny_source()
    source = ArraySource("mnist300", tiny.train_images, tiny.train_labels, x_test, {"label": y_test})
    cfg = tiny_config(tmp_path_factory.mktemp("serving"))
    result = trainer.train(cfg, source=source)
    return cfg, source, result


@pytest.fixture(scope="module")
def export_dir(run):
    return run[2].export_path


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(export_dir)


@pytest.fixture(scope="module")
def model(run):
    return saved_model.restore_run(run[0].run_dir)


@pytest.fixture(scope="module")
def tflite_dir(cli_jobs):
    """The TFLite models (all quantisations) that `python -m tf_ssinfogan.export --tflite` wrote."""
    proc = cli_jobs.result("export")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    print("\nTFLite report (bytes, max abs diff vs SavedModel):\n" + json.dumps(summary["tflite_report"], indent=1))
    return summary["tflite"]


def _call(loaded, signature, inputs):
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    return fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})


# ------------------------------------------------------------------------------------------ layout
def test_training_exports_every_signature_as_version_1(run, loaded, export_dir, request):
    if any(item.get_closest_marker("slow") for item in request.session.items):
        request.getfixturevalue("cli_jobs")  # start the CLI subprocesses now, to overlap the in-process tests
    cfg = run[0]
    assert export_dir == os.path.join(cfg.run_dir, "export", saved_model.DEFAULT_MODEL_NAME, "1")
    assert set(loaded.signatures) == set(saved_model.SIGNATURES)
    with open(os.path.join(export_dir, "assets.extra", "model_info.json")) as f:
        info = json.load(f)
    assert [c["name"] for c in info["codes"]] == ["digit", "c1", "c2"] and info["data_range"] == [0.0, 1.0]
    assert info["class_names"] == {"digit": [str(i) for i in range(10)]}  # the npz declares no names
    with open(os.path.join(export_dir, "assets.extra", "model_card.json")) as f:
        card = json.load(f)
    assert card["step"] == 4 and card["metrics"]["step"] == 4  # the final evaluation of the exported step
    assert card["metrics"]["q_ss_test_accuracy"]["digit"] == run[2].eval["q_ss_test_accuracy"]["digit"]
    assert card["data"]["labelled_images"] == 16 and "CC BY-SA 3.0" in card["licence"]["training_data"]
    assert "0 = '0', 1 = '1'" in open(os.path.join(export_dir, "assets.extra", "model_card.md")).read()


def test_versions_are_never_overwritten(tmp_path):
    model_dir = str(tmp_path / "ssinfogan")

    def write(tmp):
        with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
            f.write("v")

    first, second = saved_model.write_versioned(model_dir, write), saved_model.write_versioned(model_dir, write)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert oct(os.stat(first).st_mode & 0o777) != oct(0o700)  # readable by a model server's user
    stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(FileExistsError, match="never overwritten"):
        saved_model.write_versioned(model_dir, write, version=1)
    os.mkdir(os.path.join(model_dir, "3"))  # e.g. another writer claimed 3 meanwhile: the next free one is 4
    assert os.path.basename(saved_model.write_versioned(model_dir, write)) == "4"

    def failing(tmp):
        open(os.path.join(tmp, "half"), "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        saved_model.write_versioned(model_dir, failing)
    assert sorted(os.listdir(model_dir)) == ["1", "2", "3", "4"]  # no temp or partial folder
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp


# ------------------------------------------------------------------------------------------ signatures
def test_serving_default_matches_the_keras_generator(model, loaded):
    latents = tflite.fixed_latents(model.latent_space, 6)
    out = _call(loaded, "serving_default", latents)
    ref = model.generate(model.latent_space.from_values({k: tf.constant(v) for k, v in latents.items()}))
    np.testing.assert_allclose(out["images"].numpy(), ref.numpy(), atol=1e-6)
    assert out["images_uint8"].dtype == tf.uint8 and out["images"].shape == (6, 28, 28, 1)


def test_sample_is_reproducible_honours_fixed_codes_and_returns_the_codes_used(model, loaded):
    req = tflite.sample_request(model.latent_space, 5, {"digit": 3, "c2": [0.25]}, seed=7)
    a, b = _call(loaded, "sample", req), _call(loaded, "sample", req)
    np.testing.assert_array_equal(a["images"].numpy(), b["images"].numpy())
    other = _call(loaded, "sample", dict(req, seed=np.array(8, np.int32)))
    assert not np.allclose(a["noise"].numpy(), other["noise"].numpy())
    assert np.all(a["digit"].numpy() == 3) and np.allclose(a["c2"].numpy(), 0.25)
    assert len(set(a["c1"].numpy().ravel().tolist())) == 5  # drawn, not fixed
    again = _call(loaded, "serving_default", {k: a[k].numpy() for k in ("noise", "digit", "c1", "c2")})
    np.testing.assert_allclose(again["images"].numpy(), a["images"].numpy(), atol=1e-6)


def test_traverse_grid(loaded):
    out = _call(loaded, "traverse", {"code": "c1", "steps": 5, "rows": 2, "seed": 0})
    assert out["images"].shape == (10, 28, 28, 1) and out["grid_uint8"].shape == (56, 140, 1)
    np.testing.assert_allclose(out["values"].numpy(), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_array_equal(out["grid_uint8"].numpy()[28:56, 28:56], out["images_uint8"].numpy()[6])
    cat = _call(loaded, "traverse", {"code": "digit", "steps": 10, "rows": 1, "seed": 0})
    np.testing.assert_array_equal(cat["values"].numpy(), np.arange(10))


BAD_INPUTS = [
    ("serving_default", {"noise": np.zeros((2, 61), np.float32)}, "noise", "width"),
    ("serving_default", {"digit": np.array([3, 10], np.int32)}, "digit", "< 10"),
    ("serving_default", {"digit": np.array([-1, 0], np.int32)}, "digit", ">= 0"),
    ("serving_default", {"c1": np.array([[0.0], [np.nan]], np.float32)}, "c1", "finite"),
    ("serving_default", {"c2": np.zeros((3, 1), np.float32)}, "c2", "batch size"),
    ("sample", {"batch_size": np.array(0, np.int32)}, "batch_size", ">= 1"),
    ("sample", {"digit": np.array(12, np.int32), "digit_fixed": np.array(True)}, "digit", "< 10"),
    ("sample", {"c1": np.array([np.inf], np.float32), "c1_fixed": np.array(True)}, "c1", "finite"),
    ("traverse", {"code": "c9"}, "code", "unknown code"),
    ("traverse", {"steps": np.array(1, np.int32)}, "steps", ">= 2"),
    ("classify", {"images": np.zeros((1, 28, 27, 1), np.float32)}, "images", "shape"),
    ("classify", {"images": np.full((1, 28, 28, 1), 255.0, np.float32)}, "images", "data range"),
    ("classify", {"images": np.full((1, 28, 28, 1), np.nan, np.float32)}, "images", "finite"),
    ("classify_uint8", {"images": np.zeros((1, 14, 14, 1), np.uint8)}, "images", "shape"),
]


@pytest.mark.parametrize("signature,change,name,problem", BAD_INPUTS,
                         ids=[f"{s}-{n}-{p}" for s, _, n, p in BAD_INPUTS])
def test_bad_inputs_fail_with_an_error_naming_the_input(model, loaded, signature, change, name, problem):
    space = model.latent_space
    good = {
        "serving_default": tflite.fixed_latents(space, 2),
        "sample": tflite.sample_request(space, 2, seed=0),
        "traverse": {"code": "c1", "steps": 3, "rows": 1, "seed": 0},
        "classify": {"images": np.zeros((1, 28, 28, 1), np.float32)},
        "classify_uint8": {"images": np.zeros((1, 28, 28, 1), np.uint8)},
    }[signature]
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        _call(loaded, signature, {**good, **change})
    message = saved_model.error_message(err.value)
    assert message.startswith(f"input '{name}':") and problem in message, message


# ------------------------------------------------------------------------------------------ Q as classifier
def test_classify_accuracy_equals_q_ss_accuracy(run, model, loaded):
    _, source, result = run
    expected = result.eval["q_ss_test_accuracy"]["digit"]  # computed by training on the same weights
    assert report.q_ss_test_accuracy(model, source)["digit"] == expected
    labels = source.test_labels["label"]
    for signature, images in (("classify", images_to_float(source.test_images, (0.0, 1.0))),
                              ("classify_uint8", source.test_images)):
        pred = np.concatenate([_call(loaded, signature, {"images": images[i:i + 500]})["digit"].numpy()
                               for i in range(0, len(labels), 500)])
        assert float(np.mean(pred == labels)) == pytest.approx(expected, abs=0)


# ------------------------------------------------------------------------------------------ as TF Serving sees it
def _site_packages():
    return [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]


ISOLATED_SCRIPT = r'''
import json, sys
sys.path.extend(json.loads(sys.argv[1]))  # site-packages without .pth files: the editable install is absent
try:
    import tf_ssinfogan
    raise SystemExit("tf_ssinfogan is importable: the isolation failed")
except ImportError:
    pass
sys.path.insert(0, sys.argv[3])  # export/ : the client, which needs only TensorFlow
import numpy as np
import client
m = client.LocalModel(sys.argv[2])
report = {"signatures": sorted(m.signatures), "inputs": {k: sorted(m.inputs(k)) for k in m.signatures}}
for name in ("serving_default", "sample", "traverse", "classify", "classify_uint8"):
    with open(f"{sys.argv[3]}/requests/{name}.json") as f:
        body = json.load(f)
    inputs = body.get("inputs") or {k: [row[k] for row in body["instances"]] for k in body["instances"][0]}
    out = m.call(name, **inputs)
    report[name] = {k: [str(v.dtype), list(v.shape)] for k, v in out.items()}
s = m.sample(3, seed=1, digit=2)
report["client_sample_digits"] = s["digit"].tolist()
print("REPORT" + json.dumps(report))
'''


CLI_RUN_PAYLOADS = ("serving_default", "sample", "traverse")


@pytest.fixture(scope="module")
def cli_jobs(run, export_dir, tmp_path_factory):
    """Starts every TensorFlow-loading CLI check on the SavedModel at once; tests collect their results."""
    folder = str(tmp_path_factory.mktemp("cli"))
    jobs = Jobs(folder, ROOT, ENV)
    base = os.path.join(folder, "models")
    os.makedirs(os.path.join(base, "ssinfogan", "1"))  # version 1 exists: the CLI must take 2, refuse --version=1
    export = [sys.executable, "-m", "tf_ssinfogan.export", f"--run_dir={run[0].run_dir}", f"--export_base={base}"]
    jobs.start("export", export + ["--tflite"])
    jobs.start("export_v1", export + ["--version=1"])
    jobs.start("export_bad_run", [sys.executable, "-m", "tf_ssinfogan.export", f"--run_dir={folder}/nope"])
    script = os.path.join(folder, "isolated.py")
    with open(script, "w") as f:
        f.write(ISOLATED_SCRIPT)
    jobs.start("isolated", [sys.executable, "-I", "-S", script, json.dumps(_site_packages()), export_dir,
                            EXPORT_ASSETS], cwd=folder)
    jobs.start("show", ["saved_model_cli", "show", "--dir", export_dir, "--all"])
    for name in CLI_RUN_PAYLOADS:
        body = _body(name)
        exprs = ";".join(f"{k}={v!r}" for k, v in _columnar(body).items())
        jobs.start(f"run_{name}", ["saved_model_cli", "run", "--dir", export_dir, "--tag_set", "serve",
                                   "--signature_def", body["signature_name"], "--input_exprs", exprs,
                                   "--outdir", os.path.join(folder, name)])
    out = os.path.join(folder, "grid.png")
    sample = [sys.executable, "-m", "tf_ssinfogan.sample", f"--model={export_dir}", "--num=10"]
    jobs.start("sample", sample + ["--code=digit=3", f"--out={out}"])
    jobs.start("sample_bad", sample + ["--code=digit=10", f"--out={out}.bad.png"])
    jobs.base, jobs.grid = base, out
    yield jobs
    jobs.stop()


@pytest.mark.slow
def test_every_signature_loads_where_tf_ssinfogan_cannot_be_imported(cli_jobs):
    proc = cli_jobs.result("isolated")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPORT", 1)[1])
    assert report["signatures"] == sorted(saved_model.SIGNATURES)
    assert report["inputs"]["serving_default"] == ["c1", "c2", "digit", "noise"]
    assert report["serving_default"]["images_uint8"] == ["uint8", [2, 28, 28, 1]]
    assert report["sample"]["images"] == ["float32", [4, 28, 28, 1]]
    assert report["traverse"]["grid_uint8"] == ["uint8", [56, 280, 1]]
    assert report["classify"]["digit_probs"] == ["float32", [2, 10]]
    assert report["client_sample_digits"] == [2, 2, 2]


@pytest.mark.slow
def test_saved_model_cli_show_lists_signatures_and_named_inputs(cli_jobs):
    proc = cli_jobs.result("show")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    expected = {
        "serving_default": ["noise", "digit", "c1", "c2"],
        "sample": ["batch_size", "seed", "digit", "digit_fixed", "c1", "c1_fixed", "c2", "c2_fixed"],
        "traverse": ["code", "steps", "rows", "seed"],
        "classify": ["images"],
        "classify_uint8": ["images"],
    }
    blocks = dict(re.findall(r"signature_def\['(\w+)'\]:(.*?)(?=signature_def\[|\Z)", text, re.S))
    for sig, inputs in expected.items():
        assert sig in blocks, f"signature {sig} missing from saved_model_cli show"
        assert sorted(re.findall(r"inputs\['(\w+)'\]", blocks[sig])) == sorted(inputs)
        assert "tensorflow/serving/predict" in blocks[sig]
    assert "shape: (-1, 62)" in blocks["serving_default"] and "DT_INT32" in blocks["serving_default"]


def _columnar(body):
    return body.get("inputs") or {k: [row[k] for row in body["instances"]] for k in body["instances"][0]}


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_RUN_PAYLOADS)
def test_saved_model_cli_run_with_the_rest_payloads(loaded, cli_jobs, name):
    """`saved_model_cli run --input_exprs` with exactly the inputs of export/requests/<name>.json."""
    proc = cli_jobs.result(f"run_{name}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    body = _body(name)
    ref = _call(loaded, body["signature_name"], _columnar(body))
    for key, value in ref.items():
        np.testing.assert_allclose(np.load(os.path.join(cli_jobs.folder, name, f"{key}.npy")), value.numpy(),
                                   atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", REQUEST_NAMES)
def test_predict_request_protos_feed_the_signatures(loaded, name):
    """export/grpc_request.py builds PredictRequests from the REST bodies; tf.make_ndarray recovers inputs."""
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    grpc_request = _load_module("grpc_request", os.path.join(EXPORT_ASSETS, "grpc_request.py"))
    body = _body(name)
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    # the dtypes a client reads from GetModelMetadata (the signature defs)
    req = grpc_request.build_predict_request(body, "ssinfogan", {k: s.dtype for k, s in specs.items()})
    assert req.model_spec.name == "ssinfogan" and req.model_spec.signature_name == name
    assert set(req.inputs) == set(specs)
    feed = {}
    for k, proto in req.inputs.items():
        assert tf.dtypes.as_dtype(proto.dtype) == specs[k].dtype, k
        feed[k] = tf.constant(tf.make_ndarray(proto), dtype=specs[k].dtype)
    out = fn(**feed)
    ref = _call(loaded, name, _columnar(body))
    for key in ref:
        np.testing.assert_array_equal(out[key].numpy(), ref[key].numpy())


# ------------------------------------------------------------------------------------------ CLIs
@pytest.mark.slow
def test_export_cli_writes_new_versions_and_refuses_bad_input(cli_jobs, loaded, model):
    proc = cli_jobs.result("export")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["saved_model"] == os.path.join(cli_jobs.base, "ssinfogan", "2") and summary["step"] == 4
    card = open(summary["model_card"]).read()  # the export CLI finds the run's evaluation of step 4
    assert "Evaluation of step 4:" in card and "on the real test split" in card
    tflite_dir = os.path.join(cli_jobs.base, "ssinfogan_tflite", "2")
    assert summary["tflite"] == tflite_dir and sorted(os.listdir(tflite_dir)) == sorted(
        [f"{n}_{q}.tflite" for n in ("generator", "classifier") for q in tflite.QUANTIZATIONS]
        + ["model_card.json", "model_card.md", "model_info.json", "tflite_report.json"])
    # the restored checkpoint gives the same generator as the one training exported
    latents = tflite.fixed_latents(model.latent_space, 3)
    again = tf.saved_model.load(summary["saved_model"])
    np.testing.assert_allclose(_call(again, "serving_default", latents)["images"].numpy(),
                               _call(loaded, "serving_default", latents)["images"].numpy(), atol=1e-6)
    proc = cli_jobs.result("export_v1")
    assert proc.returncode == 2 and "already exists" in proc.stderr, proc.stderr[-2000:]
    proc = cli_jobs.result("export_bad_run")
    assert proc.returncode == 2 and "config.json" in proc.stderr, proc.stderr[-2000:]
    assert sorted(os.listdir(os.path.join(cli_jobs.base, "ssinfogan"))) == ["1", "2"]  # no temp folders


@pytest.mark.slow
def test_sample_cli_on_the_saved_model(cli_jobs):
    proc = cli_jobs.result("sample")
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid = tf.io.decode_png(open(cli_jobs.grid, "rb").read()).numpy()
    assert grid.shape == (3 * 29 + 1, 4 * 29 + 1, 1)  # 10 images: 3 rows of 4
    proc = cli_jobs.result("sample_bad")
    assert proc.returncode == 2 and "digit" in proc.stderr and not os.path.exists(cli_jobs.grid + ".bad.png")


# ------------------------------------------------------------------------------------------ TFLite
LIMITS = {"float32": 1e-5, "float16": 5e-3, "int8": 5e-2}


@pytest.mark.slow
@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_tflite_parity_with_the_saved_model(tflite_dir, quantization):
    with open(os.path.join(tflite_dir, "tflite_report.json")) as f:
        entry = json.load(f)[quantization]
    for signature, diff in entry["max_abs_diff"].items():
        assert diff < LIMITS[quantization], (quantization, signature, diff)
    for name in ("generator", "classifier"):
        size = os.path.getsize(os.path.join(tflite_dir, f"{name}_{quantization}.tflite"))
        assert size == entry[f"{name}_bytes"]
    assert entry["generator_bytes"] < {"float32": 30e6, "float16": 15e6, "int8": 8e6}[quantization]


@pytest.mark.slow
def test_litert_runs_the_builtin_ops_sample_model(model, tflite_dir):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=os.path.join(tflite_dir, "generator_float32.tflite"))
    assert set(interp.get_signature_list()) == {"serving_default", "sample"}
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert not any(op.startswith("Flex") for op in ops) and {"RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM"} <= ops
    runner = interp.get_signature_runner("sample")
    req = tflite.sample_request(model.latent_space, 5, {"digit": 4})
    a, b = runner(**req), runner(**req)
    assert a["images"].shape == (5, 28, 28, 1) and a["images_uint8"].dtype == np.uint8
    assert np.all(a["digit"] == 4) and np.all(np.isfinite(a["images"]))
    assert a["images"].min() >= 0.0 and a["images"].max() <= 1.0
    assert not np.allclose(a["noise"], b["noise"])  # the interpreter's RNG stream moves on every call
    c = runner(**dict(req, batch_size=np.array(7, np.int32)))
    assert c["images"].shape == (7, 28, 28, 1)


@pytest.mark.slow
def test_sample_cli_on_a_tflite_model(tflite_dir, tmp_path):
    model = os.path.join(tflite_dir, "generator_int8.tflite")
    out, bad = tmp_path / "grid.png", tmp_path / "bad.png"
    cmd = [sys.executable, "-m", "tf_ssinfogan.sample", f"--model={model}", "--num=10"]
    jobs = Jobs(str(tmp_path))
    jobs.start("good", cmd + ["--code=digit=3", f"--out={out}"])
    jobs.start("bad", cmd + ["--code=size=3", f"--out={bad}"])
    proc = jobs.result("good")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tf.io.decode_png(out.read_bytes()).numpy().shape == (3 * 29 + 1, 4 * 29 + 1, 1)
    proc = jobs.result("bad")
    assert proc.returncode == 2 and "unknown code 'size'" in proc.stderr and not bad.exists()


# ------------------------------------------------------------------------------------------ REST client
class _FakeRestServer:
    """Answers TF Serving's REST API (`/metadata`, `:predict`) from the loaded SavedModel, in a thread.

    Not a model server: it checks that export/client.py's `RestModel` speaks the documented protocol
    (columnar requests, `{"outputs": ...}` / `{"error": ...}` replies, metadata with snake_case fields).
    """

    def __init__(self, loaded, export_dir):
        import http.server
        import threading

        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        defs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True)
                for k, v in sm.meta_graphs[0].signature_def.items()}
        metadata = {"model_spec": {"name": "ssinfogan", "version": "1"},
                    "metadata": {"signature_def": {"signature_def": defs}}}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._reply(200 if self.path == "/v1/models/ssinfogan/metadata" else 404, metadata)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/models/ssinfogan:predict":
                    return self._reply(404, {"error": "no such model"})
                try:
                    out = _call(loaded, body.get("signature_name", "serving_default"), _columnar(body))
                except tf.errors.InvalidArgumentError as e:
                    return self._reply(400, {"error": e.message})
                self._reply(200, {"outputs": {k: v.numpy().tolist() for k, v in out.items()}})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/models/ssinfogan"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rest_server(loaded, export_dir):
    server = _FakeRestServer(loaded, export_dir)
    yield server
    server.close()


def test_rest_client_speaks_the_predict_protocol(rest_server, loaded):
    client = _load_module("client", os.path.join(EXPORT_ASSETS, "client.py"))
    remote, local = client.RestModel(rest_server.url), client.LocalModel.__new__(client.LocalModel)
    local.tf, local.loaded, local.signatures = tf, loaded, loaded.signatures
    out = remote.sample(3, seed=5, digit=2)
    assert out["digit"] == [2, 2, 2] and np.asarray(out["images_uint8"]).shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(np.asarray(out["images_uint8"]), local.sample(3, seed=5, digit=2)["images_uint8"])
    q = remote.classify_uint8(np.asarray(_columnar(_body("classify_uint8"))["images"], np.uint8))
    assert np.asarray(q["digit_probs"]).shape == (2, 10)
    with pytest.raises(RuntimeError, match="HTTP 400") as err:
        remote.sample(2, digit=12)
    assert client.short_error(err.value).startswith("input 'digit': class index must be < 10")


@pytest.mark.slow
def test_rest_client_cli_needs_only_the_standard_library(rest_server, tmp_path):
    """`python -I -S`: no site-packages at all (no numpy, no TensorFlow), yet the REST client works."""
    out = tmp_path / "rest.png"
    proc = subprocess.run([sys.executable, "-I", "-S", os.path.join(EXPORT_ASSETS, "client.py"), "--rest",
                           rest_server.url, "--signature", "sample", "--code", "digit=4", "--num", "4",
                           "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tf.io.decode_png(out.read_bytes()).numpy().shape == (28, 4 * 28, 1)
    proc = subprocess.run([sys.executable, "-I", "-S", os.path.join(EXPORT_ASSETS, "client.py"), "--rest",
                           rest_server.url, "--signature", "sample", "--code", "digit=12"],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 2 and "input 'digit': class index must be < 10" in proc.stderr, proc.stderr


def test_client_accuracy_of_classify_uint8_equals_the_evaluation(run, rest_server, loaded, tmp_path):
    """export/client.py's `accuracy` (the classify_uint8 signature over an npz's test split), locally and over
    REST, gives Q_ss's accuracy of the final evaluation."""
    _, source, result = run
    client = _load_module("client", os.path.join(EXPORT_ASSETS, "client.py"))
    npz = tmp_path / "test.npz"
    y = source.test_labels["label"].copy()
    y[:3] = -1  # unknown labels are not counted
    np.savez(npz, x_test=source.test_images[..., 0], y_test=y)
    local = client.LocalModel.__new__(client.LocalModel)
    local.tf, local.loaded, local.signatures = tf, loaded, loaded.signatures
    pred = np.concatenate([_call(loaded, "classify_uint8", {"images": source.test_images})["digit"].numpy()])
    want = float(np.mean(pred[3:] == y[3:]))
    for model in (local, client.RestModel(rest_server.url)):
        got = client.classify_accuracy(model, str(npz), batch=7)
        assert got["examples"] == len(y) - 3 and got["digit"] == pytest.approx(want, abs=1e-12), got
    full = client.classify_accuracy(local, str(npz))
    assert set(full) == {"examples", "digit"}  # the class outputs only (not probabilities or c1/c2)
    np.savez(npz, x_test=source.test_images[..., 0], y_test=source.test_labels["label"])
    assert client.classify_accuracy(local, str(npz))["digit"] == pytest.approx(
        result.eval["q_ss_test_accuracy"]["digit"], abs=1e-12)


def test_client_accuracy_refuses_a_missing_or_absent_npz(export_dir, tmp_path, capsys):
    client = _load_module("client", os.path.join(EXPORT_ASSETS, "client.py"))
    assert client.main(["--model", export_dir, "--signature", "accuracy"]) == 2
    assert "accuracy needs --npz PATH" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere.npz")
    assert client.main(["--model", export_dir, "--signature", "accuracy", "--npz", missing]) == 2
    assert "nowhere.npz" in capsys.readouterr().err
