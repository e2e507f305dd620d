"""Shared test set-up: quiet TF logs, two logical CPU devices (for MirroredStrategy tests), tiny configs, and `Jobs`
(subprocesses started together, collected by name)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must happen before TF initialises its devices (i.e. before any op runs).
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:  # already initialised by another import
    pass

from tf_ssinfogan import config as C  # noqa: E402
from tf_ssinfogan.data.sources import ArraySource  # noqa: E402


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MIRRORED = []


def mirrored_strategy():
    """One MirroredStrategy over the two logical CPU devices, shared by all tests: separate strategy objects in
    one process reuse collective instance keys and then abort each other's all-reduces."""
    if not _MIRRORED:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
        assert len(devices) == 2, "conftest splits the CPU into two logical devices"
        _MIRRORED.append(tf.distribute.MirroredStrategy(devices))
    return _MIRRORED[0]


def tiny_source(n_train=64, n_test=20, seed=0, shape=(28, 28, 1), classes=10) -> ArraySource:
    """Random uint8 images with integer labels 0..classes-1 (for shapes and mechanics, not learning)."""
    rng = np.random.RandomState(seed)
    return ArraySource(
        "tiny",
        rng.randint(0, 256, size=(n_train,) + shape).astype(np.uint8),
        {"label": (np.arange(n_train) % classes).astype(np.int64)},
        rng.randint(0, 256, size=(n_test,) + shape).astype(np.uint8),
        {"label": (np.arange(n_test) % classes).astype(np.int64)},
    )


def tiny_npz(tmp_path, n_train=64):
    """`tiny_source` written as an npz file (for CLI tests); returns its path."""
    src = tiny_source(n_train=n_train)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=src.train_images[..., 0], y_train=src.train_labels["label"],
             x_test=src.test_images[..., 0], y_test=src.test_labels["label"])
    return path


def tiny_config(tmp_path, **overrides) -> C.ExperimentConfig:
    """The MNIST reference config shrunk to a few steps of batch 8 with 25% labels; `overrides` are fields of the
    train or objective section, or the judge section's flags."""
    cfg = C.ExperimentConfig(run_dir=str(tmp_path / "run"))
    objective = {k: overrides.pop(k) for k in list(overrides) if k in C.ObjectiveConfig.__dataclass_fields__}
    judge = {f.name: overrides.pop(f.metadata.get("flag", f.name)) for f in dataclasses.fields(C.JudgeConfig)
             if f.metadata.get("flag", f.name) in overrides}  # by flag name: judge_epochs=2
    train = dataclasses.replace(
        cfg.train, batch_size=8, steps=4, steps_per_epoch=2, checkpoint_every_epochs=1, grid_every_epochs=1,
        verbose=0, **overrides)
    data = dataclasses.replace(cfg.data, labelled_fraction=0.25)
    return dataclasses.replace(cfg, train=train, data=data, objective=dataclasses.replace(cfg.objective, **objective),
                               judge=dataclasses.replace(cfg.judge, **judge))


@pytest.fixture
def source():
    return tiny_source()


@pytest.fixture(scope="session")
def inception75():
    """InceptionV3 with its head, randomly initialised (seeded) at 75x75, the smallest input it accepts: the
    FID/KID/IS code paths without ImageNet weights (nothing is downloaded). Shared by every test."""
    import keras

    from tf_ssinfogan.evaluation import inception

    keras.utils.set_random_seed(0)
    return inception.InceptionExtractor(inception.build_inception(None, include_top=True, input_size=75), 75)


class Jobs:
    """Subprocesses started together (each loads TensorFlow for seconds; overlapping them saves wall time): tests
    start them in a fixture and collect each result by name. Output goes to files in `folder` (no pipe fills)."""

    def __init__(self, folder, cwd=REPO, env=None):
        self.folder, self.cwd, self.procs = str(folder), cwd, {}
        self.env = env if env is not None else {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def start(self, name, args, cwd=None, env=None):
        out = open(os.path.join(self.folder, f"{name}.out"), "w")
        err = open(os.path.join(self.folder, f"{name}.err"), "w")
        self.procs[name] = (subprocess.Popen(args, cwd=cwd or self.cwd, env=env or self.env, stdout=out, stderr=err),
                            out, err)

    def stop(self):
        """Ends the processes still running (a failed test left them), each by its own handle."""
        for proc, out, err in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close(), err.close()

    def result(self, name, timeout=300):
        proc, out, err = self.procs[name]
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out.close(), err.close()
        read = lambda f: open(f.name).read()  # noqa: E731
        return subprocess.CompletedProcess(proc.args, proc.returncode, read(out), read(err))
