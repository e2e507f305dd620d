"""Kill (SIGKILL) or stop (SIGTERM) a real training process at random moments; the run resumes and ends as if
never interrupted, and a stop loses no step."""

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import Jobs, tiny_npz, tiny_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 24


def _npz(tmp_path):
    return tiny_npz(tmp_path)


def _cmd(run_dir, npz, *extra):
    return [sys.executable, "-m", "tf_ssinfogan.train", "--flagfile=configs/mnist.flags", f"--run_dir={run_dir}",
            f"--npz_path={npz}", "--batch_size=8", f"--steps={STEPS}", "--steps_per_epoch=2",
            "--labelled_fraction=0.25", "--checkpoint_every_epochs=1", "--grid_every_epochs=100",
            "--noexport_at_end", "--verbose=0", "--deterministic", *extra]


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _weights(run_dir):
    ckpt = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return ckpt, {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
                  if n.startswith(("generator/", "discriminator/", "latent_seed"))}


class _Straight:
    """An uninterrupted run in a process of its own, started at once and awaited only when a test compares with
    it (it overlaps the interrupted runs: each process spends seconds importing TensorFlow and tracing)."""

    def __init__(self, tmp):
        self.run_dir, self.value = tmp / "run", None
        self.jobs = Jobs(tmp, env=ENV)
        self.jobs.start("straight", _cmd(self.run_dir, _npz(tmp)))

    def weights(self):
        """(newest checkpoint, weights) of the uninterrupted run."""
        if self.value is None:
            ok = self.jobs.result("straight", timeout=600)
            assert ok.returncode == 0, ok.stderr[-3000:]
            self.value = _weights(str(self.run_dir))
        return self.value


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = _Straight(tmp_path_factory.mktemp("straight"))
    yield run
    run.jobs.stop()


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path, straight):
    npz = _npz(tmp_path)
    run_dir = tmp_path / "killed"
    rng = random.Random(7)
    kills = 0
    for _ in range(2):  # two kill points (each a fresh process: TensorFlow's import and tracing dominate)
        proc = subprocess.Popen(_cmd(run_dir, npz), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        state = run_dir / "checkpoints" / "checkpoint"
        start_mtime = state.stat().st_mtime if state.exists() else 0
        while time.time() < deadline and proc.poll() is None:  # wait until this process saved a checkpoint
            if state.exists() and state.stat().st_mtime > start_mtime:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))  # then kill it anywhere: mid-step, mid-save, mid-grid
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        ckpt = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        assert ckpt is not None
        tf.train.load_checkpoint(ckpt)  # the newest checkpoint is always complete and readable
    assert kills == 2  # both processes were killed before they finished
    done = subprocess.run(_cmd(run_dir, npz), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "eval.json").exists()

    (ck_a, a), (ck_b, b) = _weights(str(run_dir)), straight.weights()
    assert ck_a.endswith(f"ckpt-{STEPS}") and ck_b.endswith(f"ckpt-{STEPS}")
    assert a.keys() == b.keys()
    for name in a:  # killed-and-resumed equals uninterrupted (same batches, same RNG state, same weights)
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_nan_guard_stops_naming_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    import dataclasses

    from tf_ssinfogan.training import trainer
    from conftest import tiny_config

    cfg = tiny_config(tmp_path)
    # an absurd learning rate makes the weights overflow within a few steps
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=40, d_learning_rate=1e30,
                                                             g_learning_rate=1e30, export_at_end=False))
    with pytest.raises(FloatingPointError, match=r"non-finite \w+ \(nan\) at step \d+; the last checkpoint is kept"):
        trainer.train(cfg, source=tiny_source())
    ckpt = tf.train.latest_checkpoint(os.path.join(cfg.run_dir, "checkpoints"))
    if ckpt is not None:  # every checkpoint left behind is complete and holds finite weights
        reader = tf.train.load_checkpoint(ckpt)
        for name, _ in tf.train.list_variables(ckpt):
            if name.startswith(("generator/", "discriminator/")):
                assert np.all(np.isfinite(reader.get_tensor(name))), name
    assert not os.path.exists(os.path.join(cfg.run_dir, "eval.json"))


def test_skip_policy_drops_a_non_finite_update_and_moves_on():
    from tf_ssinfogan import config as C
    from tf_ssinfogan.data import stream as data
    from tf_ssinfogan.model.ssinfogan import SSInfoGAN

    m = SSInfoGAN(C.LatentConfig(), C.NetworkConfig(), 8, skip_nonfinite=True)
    m.compile()
    stream = data.TrainStream(tiny_source(), C.LatentConfig(), C.DataConfig(labelled_fraction=0.25), 8, (0.0, 1.0))
    images, labels, mask = next(iter(stream.dataset(0, 1)))
    poisoned = tf.tensor_scatter_nd_update(images, [[0, 0, 0, 0]], [float("nan")])
    step = tf.function(m.train_step)  # graph mode, as fit runs it
    d_before = [v.numpy().copy() for v in m.discriminator.trainable_variables]
    g_before = [v.numpy().copy() for v in m.generator.trainable_variables]
    logs = step((poisoned, labels, mask))
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(d_before, m.discriminator.trainable_variables))
    assert not all(np.array_equal(b, v.numpy()) for b, v in zip(g_before, m.generator.trainable_variables))
    assert int(m.d_optimizer.iterations.numpy()) == 1 and m.current_step() == 1  # counters still advance
    assert float(logs["skipped"]) == pytest.approx(0.5)  # the D update of 2 updates
    assert np.isfinite(float(logs["d_loss"])) and np.isfinite(float(logs["g_loss"]))
    logs = step((images, labels, mask))
    assert float(logs["skipped"]) == pytest.approx(0.25)
    assert not all(np.array_equal(b, v.numpy()) for b, v in zip(d_before, m.discriminator.trainable_variables))


def test_skip_policy_is_refused_with_a_multi_replica_strategy():
    import dataclasses

    from tf_ssinfogan import config as C

    train = dataclasses.replace(C.TrainConfig(), nan_policy="skip", strategy="mirrored")
    with pytest.raises(C.ConfigError, match="nan_policy 'skip' needs strategy 'default'"):
        train.validate()


@pytest.mark.slow
def test_sigterm_at_random_points_loses_no_step_and_a_damaged_newest_checkpoint_falls_back(tmp_path, straight):
    npz = _npz(tmp_path)
    run_dir = tmp_path / "stopped"
    # epochs of 4 steps and a checkpoint every 1.2 s: most stops fall between epoch boundaries
    cmd = _cmd(run_dir, npz, "--steps_per_epoch=4", "--checkpoint_every_minutes=0.02")
    rng = random.Random(17)
    stops = []
    for i in range(2):  # two stop points (each a fresh process: TensorFlow's import and tracing dominate)
        log = tmp_path / f"stop{i}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        state = run_dir / "checkpoints" / "checkpoint"
        start_mtime = state.stat().st_mtime if state.exists() else 0
        deadline = time.time() + 600  # a loaded machine can take minutes to import and build
        while time.time() < deadline and proc.poll() is None:  # until this process trained and saved a step
            if "now checkpoint the current step" in log.read_text() and state.exists() and \
                    state.stat().st_mtime > start_mtime:
                break
            time.sleep(0.1)
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(rng.uniform(0.0, 1.5))  # then anywhere: mid-step, mid-save
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=120)
        text = log.read_text()
        resumed = re.search(r"resumed from \S+ at step (\d+)", text)
        start = int(resumed.group(1)) if resumed else 0
        last = tf.train.latest_checkpoint(str(run_dir / "checkpoints")) or ""
        if status in (0, -signal.SIGTERM) and last.endswith(f"ckpt-{STEPS}"):
            # the run finished its last step before the signal came: the signal ended it during the final
            # evaluation or export (at once, as documented: -SIGTERM), or the run had already ended (0, with its
            # eval.json). Either way nothing was left to save and nothing was lost
            assert not stops or start == stops[-1][1]
            assert status == -signal.SIGTERM or (run_dir / "eval.json").exists(), text[-3000:]
            stops.append((start, STEPS))
            break
        assert status == 75, text[-3000:]  # the distinct "preempted" status
        step = int(re.search(r"preempted: stopped by SIGTERM at step (\d+)", text).group(1))
        assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith(f"ckpt-{step}")
        assert not stops or start == stops[-1][1]  # the next run starts where the last one stopped: none lost
        stops.append((start, step))
        if step == STEPS:  # stopped after the last step: the next run only evaluates
            break
    assert stops[-1][1] > stops[0][0], stops  # training moved on between the stops

    # the newest checkpoint cut short (a disk fault): the rerun resumes from the previous one and says so
    newest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    data = newest + ".data-00000-of-00001"
    os.truncate(data, os.path.getsize(data) // 2)
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"checkpoint {newest} cannot be read; resuming from the previous one" in done.stderr
    (ck_a, a), (ck_b, b) = _weights(str(run_dir)), straight.weights()
    assert ck_a.endswith(f"ckpt-{STEPS}") and ck_b.endswith(f"ckpt-{STEPS}") and a.keys() == b.keys()
    for name in a:  # stopped, damaged and resumed equals uninterrupted
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    print("SIGTERM stops (start step, stop step):", stops)
