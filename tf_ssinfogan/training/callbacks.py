"""Training callbacks: checkpoints, TensorBoard scalars, fixed-latent image grids, NaN guard."""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from tf_ssinfogan.evaluation import grids
from tf_ssinfogan.rundir.checkpoints import Checkpoints


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint every `every_epochs` epochs and at the end of training (numbered by step)."""

    def __init__(self, checkpoints: Checkpoints, every_epochs: int, total_epochs: int):
        super().__init__()
        self.checkpoints, self.every, self.total = checkpoints, every_epochs, total_epochs

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.total:
            self.checkpoints.save(self.model.current_step())


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, naming the step and the term (no checkpoint is written).

    A NaN of a metric that is measured on labelled rows only (`SSInfoGAN.UNMEASURED_NAN`) means "no labelled
    row yet", not a failure: the losses that contain those terms (`d_loss`) are still checked.
    """

    def __init__(self):
        super().__init__()
        self.failure = None

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            v = float(np.asarray(value))
            if math.isnan(v) and name in getattr(self.model, "UNMEASURED_NAN", ()):
                continue
            if not math.isfinite(v):
                self.failure = f"non-finite {name} ({v}) at step {self.model.current_step()}"
                self.model.stop_training = True
                raise FloatingPointError(self.failure + "; the last checkpoint is kept intact")


class ScalarLogger(keras.callbacks.Callback):
    """TensorBoard scalars under nested tags at the global step, once per epoch (epoch means over the epoch)."""

    def __init__(self, log_dir: str, stream, batch_size: int):
        super().__init__()
        self.writer = tf.summary.create_file_writer(log_dir)
        self.stream, self.batch_size = stream, batch_size
        self._t0 = None
        self._step0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0, self._step0 = time.perf_counter(), self.model.current_step()

    def on_epoch_end(self, epoch, logs=None):
        step = self.model.current_step()
        elapsed = time.perf_counter() - self._t0
        with self.writer.as_default(step=step):
            for name, value in (logs or {}).items():
                if name in getattr(self.model, "UNMEASURED_NAN", ()) and math.isnan(float(np.asarray(value))):
                    continue  # an epoch without labelled rows: nothing measured, nothing logged
                group = "Loss" if name.endswith(("loss", "adv")) or name.startswith("q_") else "Info"
                if name.endswith("acc"):
                    group = "Accuracy"
                tf.summary.scalar(f"{group}/{name}", float(np.asarray(value)))
            tf.summary.scalar("Schedule/p_labelled", float(self.stream.probability(max(step - 1, 0))))
            if step > self._step0:
                tf.summary.scalar("Timing/sec_per_100_steps", 100.0 * elapsed / (step - self._step0))
                tf.summary.scalar("Timing/images_per_sec", (step - self._step0) * self.batch_size / elapsed)
        self.writer.flush()


class ImageGridCallback(keras.callbacks.Callback):
    """Fixed-latent grids per code every `every_epochs` epochs (and at the end), from the averaged weights where
    the run keeps moving averages."""

    def __init__(self, out_dir: str, log_dir: str, every_epochs: int, total_epochs: int):
        super().__init__()
        self.out_dir, self.every, self.total = out_dir, every_epochs, total_epochs
        self.writer = tf.summary.create_file_writer(log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.total:
            with self.model.averaged_weights():  # G's moving average, where the run keeps one
                grids.write_code_grids(self.model, self.out_dir, self.model.current_step(), self.writer)
            self.writer.flush()
