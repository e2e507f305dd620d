"""The benchmarks stay runnable from a checkout and report what they promise (tiny cases; no timing is judged:
the figures themselves live in the benchmarks' output and in docs/results.md)."""

import json
import os
import sys

import pytest

from conftest import Jobs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow

CASES = {  # test: (benchmark script, its arguments)
    "flops": ("train_step.py", ["--batch=8", "--steps=2", "--warmup=1", "--variant=baseline,default", "--xla=off",
                                "--no_peak"]),
    "precisions": ("train_step.py", ["--batch=8", "--steps=1", "--warmup=1", "--variant=default", "--xla=off",
                                     "--precision=float32,mixed_bfloat16", "--repeats=2"]),
    "kernel_profile": ("kernel_profile.py", ["--arch=mnist", "--precision=mixed_bfloat16", "--steps=1", "--batch=8"]),
    "input_pipeline": ("input_pipeline.py", ["--steps=5", "--batch=16"]),
    "export_latency": ("export_latency.py", ["--iters=2", "--batches=1"]),
    "explore_latency": ("explore_latency.py", ["--untrained=mnist", "--iters=3", "--grid_iters=1", "--grid=3,2",
                                               "--burst=3", "--bursts=1"]),
}


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    """The cases' benchmarks, run from an unrelated folder (each must find the package by itself), two at a time:
    each loads TensorFlow and traces for seconds, mostly on one core, so the next case starts while a test waits
    for its own (more at once only crowd a 2-core machine). No timing is judged."""
    folder = tmp_path_factory.mktemp("benchmarks")
    jobs = Jobs(folder, cwd=str(folder), env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""})
    yield jobs
    jobs.stop()


def _bench(benches, case):
    """stdout lines of a case's benchmark (started now unless it already was, and the next case with it), which
    must have succeeded."""
    order = list(CASES)
    for name in order[order.index(case):order.index(case) + 2]:
        if name not in benches.procs:
            script, args = CASES[name]
            benches.start(name, [sys.executable, os.path.join(REPO, "benchmarks", script), *args])
    out = benches.result(case, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_train_step_reports_flops_of_the_reference_step_and_of_each_variant(benches):
    lines = _bench(benches, "flops")
    assert any(line.startswith("# hardware:") for line in lines)
    cases = {c["variant"]: c for c in (json.loads(line) for line in lines if line.startswith("{"))}
    assert set(cases) == {"baseline", "default"}
    for c in cases.values():
        assert c["batch"] == 8 and c["precision"] == "float32" and c["images_per_s"] > 0
        # both figures are rounded to 0.1: at a few images/s (a loaded machine) that is more than 1%
        assert c["gflop_per_s"] == pytest.approx(c["mflop_per_image"] * c["images_per_s"] / 1e3, rel=0.01, abs=0.1)
    # The MNIST reference step is about 315 MFLOP per image (forward and backward of both phases); the G phase
    # reusing the D phase's fakes saves one generator forward pass
    assert 300 < cases["default"]["mflop_per_image"] < 330
    assert cases["baseline"]["mflop_per_image"] > 1.05 * cases["default"]["mflop_per_image"]


def test_train_step_compares_precisions_in_turns_against_both_matmul_peaks(benches):
    lines = _bench(benches, "precisions")
    assert any(line.startswith("# dense matmul 2048^3 peak: float32") and "bfloat16" in line for line in lines)
    cases = {c["precision"]: c for c in (json.loads(line) for line in lines if line.startswith("{"))}
    assert set(cases) == {"float32", "mixed_bfloat16"}
    for c in cases.values():
        assert c["repeats"] == 2 and c["utilisation_vs_fp32_peak"] > 0 and c["utilisation_vs_bf16_peak"] > 0
        assert c["vs_float32"] > 0
    assert cases["float32"]["vs_float32"] == 1.0
    ratio = cases["float32"]["step_ms"] / cases["mixed_bfloat16"]["step_ms"]
    assert cases["mixed_bfloat16"]["vs_float32"] == pytest.approx(ratio, abs=0.01)
    # the same FLOPs in either precision; the Markdown summary has one row per case
    assert cases["float32"]["mflop_per_image"] == cases["mixed_bfloat16"]["mflop_per_image"]
    assert sum(line.startswith("| mnist | 8 | default |") for line in lines) == 2


def test_kernel_profile_lists_onednn_primitives_and_tf_op_groups(benches):
    lines = _bench(benches, "kernel_profile")
    assert lines[0].startswith("# machine:") and "native bf16" in lines[0]
    assert any(line.startswith("## mnist mixed_bfloat16") for line in lines)
    kernels = [line for line in lines if line[:6].strip().endswith("%")]
    assert any(" convolution " in k for k in kernels) and any(" bf16 " in k for k in kernels)
    (ops,) = [line for line in lines if line.startswith("TF ops")]
    assert "oneDNN" in ops and "Cast" in ops


def test_input_pipeline_mixes_labelled_batches_by_the_schedule(benches):
    lines = _bench(benches, "input_pipeline")
    cases = [json.loads(line) for line in lines if line.startswith("{")]
    assert [c["start_step"] for c in cases] == [0, 2000]
    # p(labelled) starts at 1 and is annealed to the 1% ratio by step 1,000
    assert cases[0]["labelled_batches"] == 5 and cases[1]["labelled_batches"] <= 2
    assert all(c["images_per_s"] > 0 for c in cases)


def test_export_latency_times_the_saved_model_and_every_tflite_model(benches):
    lines = _bench(benches, "export_latency")
    ops = {line.split(":")[0]: line for line in lines if line.startswith("ops of TFLite")}
    assert set(ops) == {"ops of TFLite float32", "ops of TFLite float16", "ops of TFLite int8"}
    assert "TRANSPOSE_CONV[int8]" in ops["ops of TFLite int8"] and "FULLY_CONNECTED[int8]" in ops["ops of TFLite int8"]
    rows = [line.split() for line in lines if line.startswith(("SavedModel", "TFLite"))]
    # the free-batch models, then the ones converted for batch 1 only (static shapes)
    assert [r[0] if r[0] == "SavedModel" else " ".join(r[1:3]) for r in rows] == [
        "SavedModel", "float32 (26.5", "float16 (13.3", "int8 (6.8", "float32 batch", "float16 batch", "int8 batch"]
    assert all(float(r[-4]) > 0 and float(r[-3]) >= float(r[-4]) for r in rows)  # p99 >= p50
    assert all(float(r[-1]) < 0.05 for r in rows[1:])  # max difference from the SavedModel's images


def test_explore_latency_times_image_grid_and_burst_requests(benches):
    lines = _bench(benches, "explore_latency")
    assert lines[0].startswith("# machine:") and "CPU family" in lines[0]
    (case,) = [json.loads(line) for line in lines if line.startswith("{")]
    assert case["model"] == "mnist (untrained)" and case["image_shape"] == [28, 28, 1]
    assert 0 < case["image_ms"]["p50"] <= case["image_ms"]["p95"] and case["grid_3x2_ms"]["p50"] > 0
    assert 1 <= case["burst"]["computed_max"] <= 3  # a superseded request is answered without a model call
