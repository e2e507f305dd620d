"""Training runs: run-folder contents, resume from the saved step, CLI errors, export loadable without us."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan import config as C
from tf_ssinfogan.rundir import checkpoints
from tf_ssinfogan.training import trainer
from conftest import Jobs, tiny_config, tiny_npz, tiny_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _StepRecorder:
    """Records the model's step at the start of fit and the steps that the data fed."""

    def __new__(cls):
        import keras

        class Rec(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = self.model.current_step()

        return Rec()


@pytest.mark.slow
def test_run_folder_checkpoint_and_resume_continue_from_saved_step(tmp_path):
    """A 2-step run: its folder, a checkpoint that restores every variable; resumed to 4 steps it equals a straight
    4-step run; a finished run is not trained again and a changed model is refused. (One test: each run traces
    the train step afresh, which is most of its time.)"""
    src = tiny_source()
    cfg = tiny_config(tmp_path)
    first = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2, export_at_end=False))
    result = trainer.train(first, source=src)
    assert result.step == 2
    run = cfg.run_dir
    assert json.load(open(os.path.join(run, "config.json")))["train"]["steps"] == 2
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-2")
    assert sorted(os.listdir(os.path.join(run, "grids"))) == [
        "grid_c1_000002.png", "grid_c2_000002.png", "grid_digit_000002.png"]

    # the checkpoint restores every variable
    model = checkpoints.build_model(first, 0.25)
    checkpoints.make_checkpoint(model).restore(
        tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))).assert_consumed()
    assert model.current_step() == 2
    bn = model.generator.blocks[1]
    assert not np.allclose(bn.moving_variance.numpy(), 1.0)  # BN statistics come back too

    rec = _StepRecorder()
    resumed = trainer.train(cfg, source=src, extra_callbacks=[rec])
    assert rec.start == 2  # resumed from the checkpoint, not from scratch
    assert resumed.step == 4
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-4")

    # the interrupted-and-resumed run ends with the weights of an uninterrupted one
    straight_cfg = dataclasses.replace(cfg, run_dir=str(tmp_path / "straight"))
    trainer.train(straight_cfg, source=src)

    def weights(run_dir):
        return {n: tf.train.load_variable(tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")), n)
                for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")))
                if n.startswith(("generator/", "discriminator/", "latent_seed"))}

    a, b = weights(run), weights(straight_cfg.run_dir)
    assert a.keys() == b.keys() and len(a) > 40
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # a finished run is not trained again; changing the model in the same folder is refused
    again = trainer.train(cfg, source=src)
    assert again.step == 4 and again.eval is None
    other = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, noise_dim=10))
    with pytest.raises(C.ConfigError, match="different latent configuration"):
        trainer.train(other, source=src)


def _run_cli(args, cwd=REPO, timeout=240):
    return subprocess.run([sys.executable, "-m", "tf_ssinfogan.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_cli_dry_run_prints_resolved_reference_config():
    out = _run_cli(["--flagfile=configs/mnist.flags", "--dry_run"])
    assert out.returncode == 0, out.stderr
    cfg = C.ExperimentConfig.from_dict(json.loads(out.stdout))
    assert cfg.train.batch_size == 128 and cfg.train.steps == 5000 and cfg.train.beta_1 == 0.5
    assert cfg.train.d_learning_rate == 1e-4 and cfg.train.g_learning_rate == 1e-3
    assert cfg.data.labelled_fraction == 0.01 and cfg.data.label_seed == 1234
    assert cfg.latent.codes == C.parse_codes("digit:cat:10:label,c1:cont:1,c2:cont:1")
    assert cfg.objective.reuse_fakes and not cfg.train.fused_adam and cfg.train.precision == "float32"  # the defaults
    out = _run_cli(["--flagfile=configs/mnist.flags", "--dry_run", "--noreuse_fakes", "--fused_adam",
                    "--precision=mixed_bfloat16"])
    off = C.ExperimentConfig.from_dict(json.loads(out.stdout))
    assert not off.objective.reuse_fakes and off.train.fused_adam and off.train.precision == "mixed_bfloat16"


def test_build_model_takes_the_step_settings(tmp_path):
    from tf_ssinfogan.model.optimizers import FusedAdam

    model = checkpoints.build_model(tiny_config(tmp_path), 0.1)  # the defaults: reused fakes, Keras's Adam
    assert model.objective.reuse_fakes and not isinstance(model.d_optimizer, FusedAdam)
    model = checkpoints.build_model(tiny_config(tmp_path, reuse_fakes=False, fused_adam=True), 0.1)
    assert not model.objective.reuse_fakes and isinstance(model.d_optimizer, FusedAdam) and \
        isinstance(model.g_optimizer, FusedAdam)


BAD_INPUT = [
    (["--labelled_fraction=1.5"], "labelled_fraction must be in [0, 1], got 1.5"),
    (["--codes=digit:foo:10:label"], "kind 'foo'"),
    (["--steps=150", "--steps_per_epoch=100"], "steps (150) must be a multiple of steps_per_epoch (100)"),
    (["--architecture=resnet"], "architecture 'resnet' is not one of"),
    (["--precision=float16"], "--precision=float16: value should be one of <float32|mixed_bfloat16|mixed_float16|auto>"),
    (["--image_shape=28,x,1"], "image_shape must be three integers"),
    (["--npz_path=/nonexistent/data.npz"], "npz file '/nonexistent/data.npz' does not exist"),
    (["--codes=digit:cat:5:label"], "code 'digit' has 5 categories, but label 'label'"),
    (["--source=tfds", "--tfds_name=no_such_dataset", "--nodownload"], "TFDS dataset 'no_such_dataset'"),
    (["--strategy=mirrored", "--cpu_devices=2", "--batch_size=7"],
     "batch_size 7 is not divisible by the 2 replicas"),
]


@pytest.fixture(scope="module")
def bad_input_jobs(tmp_path_factory):
    """Every BAD_INPUT case's CLI process, started at once (the later checks load TensorFlow for seconds each;
    overlapping them saves wall time); each case's run folder is its own."""
    jobs = Jobs(tmp_path_factory.mktemp("bad_input"))
    jobs.run_dirs = {}
    for i, (args, _) in enumerate(BAD_INPUT):
        run_dir = jobs.run_dirs[i] = os.path.join(jobs.folder, f"run{i}")
        # a short schedule, so that a missed error costs seconds, not a full run
        jobs.start(str(i), [sys.executable, "-m", "tf_ssinfogan.train", "--flagfile=configs/mnist.flags",
                            f"--run_dir={run_dir}", "--verbose=0", "--batch_size=8", "--steps=2", "--steps_per_epoch=1",
                            "--noexport_at_end", *args])
    yield jobs
    jobs.stop()


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[f"args{i}-{n}" for i, (_, n) in enumerate(BAD_INPUT)])
def test_cli_rejects_bad_input_with_a_clear_message(bad_input_jobs, case):
    _, needle = BAD_INPUT[case]
    out = bad_input_jobs.result(str(case), timeout=240)
    run_dir = bad_input_jobs.run_dirs[case]
    assert out.returncode != 0
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))  # nothing half-written


def _communicate(proc, timeout):
    """(stdout, stderr) of a started process; killed if it runs past `timeout` seconds."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
def test_cli_end_to_end_and_export_loads_without_the_package(tmp_path):
    # the evaluation CLI refusing a folder that is no run: started now, beside the training (each process spends
    # seconds importing TensorFlow; on 2 cores two of them overlap)
    bad = subprocess.Popen([sys.executable, "-m", "tf_ssinfogan.evaluate", f"--run_dir={tmp_path / 'nope'}"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    npz = tiny_npz(tmp_path)
    run_dir = tmp_path / "run"
    out = _run_cli(["--flagfile=configs/mnist.flags", f"--run_dir={run_dir}", f"--npz_path={npz}",
                    "--batch_size=8", "--steps=4", "--steps_per_epoch=2", "--labelled_fraction=0.25",
                    "--checkpoint_every_epochs=1", "--grid_every_epochs=1", "--verbose=0"])
    assert out.returncode == 0, out.stderr[-3000:]
    files = set(os.listdir(run_dir))
    assert {"config.json", "flags.txt", "data_info.json", "checkpoints", "logs", "grids", "eval.json",
            "samples_by_class.png", "export"} <= files
    assert "--labelled_fraction=0.25" in open(run_dir / "flags.txt").read()
    ev = json.load(open(run_dir / "eval.json"))
    assert ev["step"] == 4 and 0.0 <= ev["q_ss_test_accuracy"]["digit"] <= 1.0
    events = os.listdir(run_dir / "logs" / "train")
    assert events and all(e.startswith("events.out.tfevents") for e in events)
    exports = [os.path.join(dp, d) for dp, dn, _ in os.walk(run_dir / "export") for d in dn if d.isdigit()]
    assert exports, "no versioned export"
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tf_ssinfogan"] = None  # this process cannot import the package
        try:
            import tf_ssinfogan
            raise SystemExit("package importable")
        except ImportError:
            pass
        import numpy as np, tensorflow as tf
        m = tf.saved_model.load({exports[0]!r})
        f = m.signatures["serving_default"]
        out = f(noise=tf.zeros([3, 62]), digit=tf.constant([0, 5, 9], tf.int32),
                c1=tf.zeros([3, 1]), c2=tf.zeros([3, 1]))
        img = out["images"].numpy()
        assert img.shape == (3, 28, 28, 1), img.shape
        assert out["images_uint8"].dtype == tf.uint8
        assert np.isfinite(img).all() and 0.0 <= img.min() and img.max() <= 1.0
        print("OK", img.shape)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # the package-less load and the evaluation CLI on the same run (it writes only run/evaluation) run side by side
    res = subprocess.Popen([sys.executable, "-c", script], cwd=str(tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
    # the evaluation CLI on the same run: trains and caches the independent classifier, writes every metric
    ev = subprocess.Popen([sys.executable, "-m", "tf_ssinfogan.evaluate", f"--run_dir={run_dir}", "--per_class=4",
                           "--fid_samples=16"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_SSINFOGAN_CACHE": str(tmp_path / "cache")})
    res_out, res_err = _communicate(res, 120)
    assert res.returncode == 0 and "OK (3, 28, 28, 1)" in res_out, res_err[-3000:]
    _, ev_err = _communicate(ev, 240)
    assert ev.returncode == 0, ev_err[-3000:]
    report = json.load(open(run_dir / "evaluation" / "eval_000004.json"))
    assert report["class_conditioned"]["digit"]["samples"] == 40
    assert 0.0 <= report["class_conditioned"]["digit"]["mapped_accuracy"] <= 1.0
    assert np.isfinite(report["judge_frechet_distance"]["value"])  # the offline distance, under its own name
    assert set(report["information_bounds"]) == {"digit", "c1", "c2"}
    assert report["codes"]["digit"]["judge"]["held_out"]["metric"] == "accuracy"
    assert "| judge accuracy on class-conditioned samples" in open(run_dir / "evaluation" / "report.md").read()
    assert os.listdir(tmp_path / "cache" / "classifiers")
    _, bad_err = _communicate(bad, 120)
    assert bad.returncode == 2 and "has no config.json" in bad_err


@pytest.mark.slow
def test_classifier_recipe_resumes_exactly_and_evaluates_with_the_averaged_weights(tmp_path):
    """Mixed labelled batches, shifts, consistency pseudo-labels and D/Q's moving average: stopped at step 2 and
    resumed equals straight through (the averages included), and the final evaluation, `load_run` (evaluate,
    export) and the checkpoint's averages agree."""
    from tf_ssinfogan.evaluation import report

    src = tiny_source()
    recipe = dict(d_average=0.5, g_average=0.9, adversarial_labelled=False, pseudo_label_weight=1.0,
                  pseudo_label_threshold=0.5, pseudo_label_shift=1,
                  q_ss_fake_weight=1.0, export_at_end=False)
    cfg = tiny_config(tmp_path, **recipe)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, labelled_per_batch=2, labelled_shift=1))
    trainer.train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2)), source=src)
    result = trainer.train(cfg, source=src)
    straight = dataclasses.replace(cfg, run_dir=str(tmp_path / "straight"))
    trainer.train(straight, source=src)

    def variables(run_dir):
        ckpt = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        return {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
                if not n.startswith(("metrics", "_CHECKPOINTABLE", "save_counter"))}

    a, b = variables(cfg.run_dir), variables(straight.run_dir)
    n_d = len(checkpoints.build_model(cfg, 0.25).discriminator.trainable_variables)
    slots = [n for n in a if n.startswith("d_optimizer/_variables/")]
    assert a.keys() == b.keys() and len(slots) == 3 * n_d  # first and second moments, and the average
    n_g = len(checkpoints.build_model(cfg, 0.25).generator.trainable_variables)
    assert len([n for n in a if n.startswith("g_optimizer/_variables/")]) == 3 * n_g
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)

    _, model = checkpoints.load_run(cfg.run_dir)  # D/Q hold the averages, not the raw weights
    raw = {n: v for n, v in a.items() if n.startswith("discriminator/") and "OPTIMIZER" not in n}
    served = [v.numpy() for v in model.discriminator.trainable_variables]
    assert all(any(w.shape == a[n].shape and np.array_equal(w, a[n]) for n in slots) for w in served)
    assert not all(any(w.shape == r.shape and np.array_equal(w, r) for r in raw.values()) for w in served)
    assert result.eval["q_ss_test_accuracy"] == report.q_ss_test_accuracy(model, src)
    g_slots = [a[n] for n in a if n.startswith("g_optimizer/_variables/")]
    assert all(any(w.shape == v.shape and np.array_equal(w, v) for v in g_slots)
               for w in (x.numpy() for x in model.generator.trainable_variables))  # G generates from its average
