"""Preemption safety: stop signals checkpoint the current step, mid-epoch resume is exact, a damaged newest
checkpoint falls back, full disks give a clear error (SIGTERM on a real process: test_reliability.py)."""

import dataclasses
import errno
import logging
import os
import shutil
import signal
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_ssinfogan.evaluation.grids import write_code_grids
from tf_ssinfogan.rundir import checkpoints
from tf_ssinfogan.training import preemption, trainer
from tf_ssinfogan.rundir.fileio import WriteError
from conftest import tiny_config, tiny_source


def _config(tmp_path, name, **train):
    cfg = tiny_config(tmp_path, export_at_end=False)
    # epochs of 4 steps: checkpoints at the epoch ends, steps 4 and 8
    train = {"steps": 8, "steps_per_epoch": 4, "grid_every_epochs": 100, **train}
    return dataclasses.replace(cfg, run_dir=str(tmp_path / name), train=dataclasses.replace(cfg.train, **train))


def _state(run_dir, step=None):
    """Weights, latent RNG state and running metrics of the newest (or the given) checkpoint."""
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    ckpt = os.path.join(ckpt_dir, f"ckpt-{step}") if step else tf.train.latest_checkpoint(ckpt_dir)
    return ckpt, {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
                  if n.startswith(("generator/", "discriminator/", "latent_seed", "metrics/"))}


def _assert_same(a, b):
    assert a.keys() == b.keys() and len(a) > 40 and any(n.startswith("metrics/") for n in a)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


class _SignalAt(keras.callbacks.Callback):
    """Sends a signal to this process at the end of step `step` (as a scheduler would, mid-run)."""

    def __init__(self, step, signum):
        super().__init__()
        self.step, self.signum, self.start = step, signum, None

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = self.model.current_step()

    def on_train_batch_end(self, batch, logs=None):
        if self.model.current_step() == self.step:
            signal.raise_signal(self.signum)  # to this thread: handled before it returns


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 8-step run (checkpoints at steps 4 and 8)."""
    cfg = _config(tmp_path_factory.mktemp("straight"), "run")
    trainer.train(cfg, source=tiny_source())
    return cfg.run_dir


@pytest.mark.parametrize("loop, signum, at", [
    ("fit", signal.SIGTERM, 5), ("custom", signal.SIGINT, 3),  # between epoch boundaries (epochs of 4 steps)
    ("fit", signal.SIGTERM, 4),  # at one: the next epoch's metrics start afresh
])
def test_signal_checkpoints_the_current_step_and_the_resumed_run_matches(tmp_path, straight, loop, signum, at):
    cfg = _config(tmp_path, "run", loop=loop)
    before = signal.getsignal(signum)
    with pytest.raises(preemption.Preempted, match=f"stopped by {signal.Signals(signum).name} at step {at}") as e:
        trainer.train(cfg, source=tiny_source(), extra_callbacks=[_SignalAt(at, signum)])
    assert signal.getsignal(signum) is before  # the handlers are put back
    assert e.value.step == at and e.value.checkpoint.endswith(f"ckpt-{at}")
    ckpt, _ = _state(cfg.run_dir)
    assert ckpt.endswith(f"ckpt-{at}")  # between epoch boundaries: no step lost
    assert not os.path.exists(os.path.join(cfg.run_dir, "eval.json"))

    rec = _SignalAt(-1, signum)  # only records the start
    result = trainer.train(cfg, source=tiny_source(), extra_callbacks=[rec])
    assert rec.start == at and result.step == 8
    ckpt, resumed = _state(cfg.run_dir)
    assert ckpt.endswith("ckpt-8")
    _assert_same(resumed, _state(straight)[1])  # weights, RNG state and the epoch's running metrics


def _copy_checkpoints(src_run, dst):
    shutil.copytree(os.path.join(src_run, "checkpoints"), dst)
    return str(dst)


def _fresh_model(tmp_path):
    return checkpoints.build_model(_config(tmp_path, "x"), 0.25)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, straight, caplog):
    model = _fresh_model(tmp_path)

    def restore(d):
        return checkpoints.restore_newest_readable(lambda m: checkpoints.make_checkpoint(model, m), d)

    truncated = _copy_checkpoints(straight, tmp_path / "truncated")
    data = os.path.join(truncated, "ckpt-8.data-00000-of-00001")
    os.truncate(data, os.path.getsize(data) // 2)  # a copy cut short
    with caplog.at_level(logging.WARNING, logger="tf_ssinfogan"):
        assert restore(truncated) == os.path.join(truncated, "ckpt-4")
    assert model.current_step() == 4
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "ckpt-8 cannot be read" in warning and "resuming from the previous one" in warning
    assert os.path.join(truncated, "ckpt-4") in warning

    corrupt = _copy_checkpoints(straight, tmp_path / "corrupt")
    data = os.path.join(corrupt, "ckpt-8.data-00000-of-00001")
    with open(data, "r+b") as f:  # same size, flipped bytes: caught by the checksums
        f.seek(os.path.getsize(data) // 3)
        f.write(b"\xff" * 64)
    assert restore(corrupt).endswith("ckpt-4")

    lost_state = _copy_checkpoints(straight, tmp_path / "lost_state")
    with open(os.path.join(lost_state, "checkpoint"), "w") as f:
        f.write("model_checkpoint_path: \"ckpt-")  # the state file cut short: the files are listed instead
    assert restore(lost_state).endswith("ckpt-8") and model.current_step() == 8
    assert tf.train.CheckpointManager(checkpoints.make_checkpoint(model), lost_state, 3).latest_checkpoint is None  # no raise

    legacy = str(tmp_path / "legacy")  # written before the metrics were saved: still resumes
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, with_metrics=False), legacy, 3).save(checkpoint_number=8)
    assert restore(legacy).endswith("ckpt-8")

    for name in os.listdir(truncated):  # every checkpoint damaged: a clear error, nothing deleted
        if ".data-" in name:
            os.truncate(os.path.join(truncated, name), 100)
    files = sorted(os.listdir(truncated))
    with pytest.raises(checkpoints.CheckpointError, match=r"no checkpoint in .* can be read: .*ckpt-8 .*ckpt-4"):
        restore(truncated)
    assert sorted(os.listdir(truncated)) == files


class _FakeModel:
    step = 0

    def current_step(self):
        return self.step


def test_time_based_checkpoints_follow_the_clock_and_skip_epoch_saves(tmp_path):
    now = [0.0]
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), 10)
    signals = preemption.StopSignals()
    guard = preemption.PreemptionCallback(checkpoints.Checkpoints(manager), signals, every_seconds=60, epoch_save=lambda s: s % 4 == 0,
                                          clock=lambda: now[0])
    model = _FakeModel()
    guard.set_model(model)
    guard.on_train_begin()
    for step, t in [(1, 30), (2, 61), (3, 90), (4, 200), (5, 201), (6, 262)]:
        model.step, now[0] = step, t
        guard.on_train_batch_end(step)
        if step % 4 == 0:
            manager.save(checkpoint_number=step)  # the epoch-based save
            guard.on_epoch_end(step // 4 - 1)
    assert guard.saved == [(2, "time"), (6, "time")]  # not at 4 (epoch save), then 60 s after it
    signals.received = signal.SIGTERM
    model.step = 7
    with pytest.raises(preemption.Preempted, match="SIGTERM at step 7"):
        guard.on_train_batch_end(7)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-7")


def test_a_second_signal_stops_at_once():
    # the previous handler set to Python's default (KeyboardInterrupt): a shell that starts pytest in the
    # background without job control leaves SIGINT ignored, and the second signal then goes, rightly, nowhere
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with preemption.StopSignals() as signals:
            signal.raise_signal(signal.SIGINT)  # this thread: handled before the call returns
            assert signals.received == signal.SIGINT and signals.name == "SIGINT"  # recorded, training goes on
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back
    finally:
        signal.signal(signal.SIGINT, outer)


def test_checkpoint_every_minutes_is_validated():
    from tf_ssinfogan import config as C

    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(C.ConfigError, match="checkpoint_every_minutes must be a finite number >= 0"):
            C.TrainConfig(checkpoint_every_minutes=bad).validate()
    C.TrainConfig(checkpoint_every_minutes=0.5).validate()


def test_failed_writes_name_the_path(tmp_path, monkeypatch):
    model = _fresh_model(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tf_ssinfogan.rundir.fileio.os.replace", no_space)
    grids = tmp_path / "grids"
    with pytest.raises(WriteError, match=f"cannot write {grids}/grid_digit_000000.png: No space left on device"):
        write_code_grids(model, str(grids), 0)
    assert not [n for n in os.listdir(grids) if n.startswith(".tmp_")]  # no temporary left behind
    monkeypatch.undo()

    manager = tf.train.CheckpointManager(checkpoints.make_checkpoint(model), str(tmp_path / "ckpt"), 3)
    good = checkpoints.save_checkpoint(manager, 0)

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "ckpt-1_temp; No space left on device")

    monkeypatch.setattr(manager._checkpoint, "write", disk_full)
    monkeypatch.setattr(manager._checkpoint, "_write", disk_full, raising=False)
    with pytest.raises(WriteError, match=rf"cannot write checkpoint {tmp_path}/ckpt/ckpt-1: .*No space left "
                                         rf"on device; the last good checkpoint {good} is intact"):
        checkpoints.save_checkpoint(manager, 1)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")) == good


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 180 MB file system (room for one checkpoint of the MNIST nets, 160 MB, not two)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=180m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the fault-injection test covers the error path)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)  # lazily: TensorBoard writers may hold files open


@pytest.mark.slow
def test_a_full_disk_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, small_tmpfs):
    cfg = dataclasses.replace(_config(tmp_path, "unused"), run_dir=str(small_tmpfs / "run"))
    with pytest.raises(WriteError, match=r"cannot write checkpoint .*/run/checkpoints/ckpt-8: .*; the last good "
                                         r"checkpoint .*/run/checkpoints/ckpt-4 is intact") as e:
        trainer.train(cfg, source=tiny_source())
    assert "No space left on device" in str(e.value) and "{{" not in str(e.value)
    assert sorted(os.listdir(os.path.join(cfg.run_dir, "checkpoints"))) == [  # partial files removed
        "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    ckpt = tf.train.latest_checkpoint(os.path.join(cfg.run_dir, "checkpoints"))
    assert ckpt.endswith("ckpt-4")
    checkpoints.verify_checkpoint(ckpt)  # complete and readable

    # an export to a full disk: the same kind of error, no half-written version left
    model = _fresh_model(tmp_path)
    from tf_ssinfogan.serving import saved_model

    export = str(small_tmpfs / "run" / "export")
    with pytest.raises(WriteError, match=f"cannot write the export to {export}: "):
        with checkpoints.writing(export, "the export to"):
            saved_model.export_saved_model(model, export)
    assert saved_model.existing_versions(os.path.join(export, saved_model.DEFAULT_MODEL_NAME)) == []


@pytest.mark.parametrize("error, status, needle", [
    (preemption.Preempted("SIGTERM", 7, "run/checkpoints/ckpt-7"), 75, "preempted: stopped by SIGTERM at step 7"),
    (WriteError("cannot write checkpoint run/checkpoints/ckpt-8: No space left on device"), 74,
     "error: cannot write checkpoint run/checkpoints/ckpt-8: No space left on device"),
    (checkpoints.CheckpointError("no checkpoint in run/checkpoints can be read"), 2,
     "error: no checkpoint in run/checkpoints can be read"),
])
def test_cli_exit_status(tmp_path, monkeypatch, capsys, error, status, needle):
    from absl import flags

    from tf_ssinfogan import train

    def fail(cfg, **kwargs):
        raise error

    monkeypatch.setattr(trainer, "train", fail)
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", f"--run_dir={tmp_path / 'run'}", "--verbose=0"])
    try:
        assert train.main(["train"]) == status
    finally:
        flags.FLAGS.unparse_flags()
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_evaluate_and_export_load_the_newest_readable_checkpoint(tmp_path, straight, caplog):
    """`checkpoints.load_run` (evaluate, export, sample): a damaged newest checkpoint falls back to the previous one
    with a warning; none readable is a clear ConfigError (exit status 2 in the CLIs), nothing deleted."""
    from tf_ssinfogan.config import ConfigError

    run = str(tmp_path / "copy")
    shutil.copytree(straight, run)
    data = os.path.join(run, "checkpoints", "ckpt-8.data-00000-of-00001")
    os.truncate(data, os.path.getsize(data) // 2)
    with caplog.at_level(logging.WARNING, logger="tf_ssinfogan"):
        _, model = checkpoints.load_run(run)
    assert model.current_step() == 4 and "ckpt-8 cannot be read" in caplog.text
    for name in os.listdir(os.path.join(run, "checkpoints")):
        if ".data-" in name:
            os.truncate(os.path.join(run, "checkpoints", name), 100)
    with pytest.raises(ConfigError, match="no checkpoint in .* can be read"):
        checkpoints.load_run(run)
    _, model = checkpoints.load_run(straight)
    assert model.current_step() == 8  # an intact run: its newest
