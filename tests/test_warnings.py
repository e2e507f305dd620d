"""A training run with valid input warns about nothing: every warning it raised came from the package's own calls
(e.g. Keras's "shuffle=True was passed, but will be ignored" for a tf.data.Dataset). pytest.ini ignores
UserWarning, so the run re-enables every warning for its duration."""

import dataclasses
import logging
import traceback
import warnings

import pytest

from tf_ssinfogan.training import trainer
from conftest import tiny_config, tiny_source


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage()[:300])


def _package_frames():
    return [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in traceback.extract_stack()
            if "/tf_ssinfogan/" in f.filename]


@pytest.mark.slow
def test_tiny_training_run_with_its_judge_emits_no_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_SSINFOGAN_CACHE", str(tmp_path / "cache"))  # the judge is trained here, in this run
    cfg = tiny_config(tmp_path, final_classifier_eval=True, judge_epochs=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2, steps_per_epoch=1))
    caught = []

    def record(message, category, filename, lineno, file=None, line=None):
        caught.append((category.__name__, f"{filename}:{lineno}", str(message)[:300], _package_frames()[-3:]))

    tf_log = _Recorder()
    logging.getLogger("tensorflow").addHandler(tf_log)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", DeprecationWarning)  # hidden from users by Python's defaults
            warnings.simplefilter("ignore", ResourceWarning)  # likewise (and raised from the GC at random points)
            warnings.showwarning = record
            result = trainer.train(cfg, source=tiny_source())
    finally:
        logging.getLogger("tensorflow").removeHandler(tf_log)
    assert result.step == 2 and result.eval["class_conditioned"]  # the judge was trained and used
    assert not caught, caught
    assert not tf_log.records, tf_log.records  # TensorFlow's WARNING lines (e.g. retracing) count too


def test_a_keras_userwarning_is_seen_despite_pytest_ini():
    """The test above can fail: the Keras warning it guards against, raised as our judges once raised it."""
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"))).batch(2)
    caught = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *a, **k: caught.append((category, str(message)))
        model.fit(data, epochs=1, verbose=0)  # shuffle=True by default
    assert any(c is UserWarning and "shuffle=True" in m for c, m in caught), caught
