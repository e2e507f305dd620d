"""Preemption-safe training: stop signals and time-based checkpoints (saving and the fallback on resume:
`rundir.checkpoints`).

- SIGTERM or SIGINT (Kubernetes, Slurm, spot instances, Ctrl-C) during training: the current step finishes, a
  checkpoint of that step is written and `Preempted` is raised (the CLI exits with `cli.EXIT_PREEMPTED`); rerunning
  the command resumes at that step. A second signal ends the process at once (the default action).
- Every `checkpoint_every_minutes` a checkpoint is written between the epoch-based ones, so that the work lost
  to SIGKILL is bounded in time.
- Under MultiWorkerMirroredStrategy both decisions are all-reduced after every step, so that every worker
  saves at the same step (a signal to any worker stops all of them; the chief's clock sets the time period).

TensorFlow's `PreemptionCheckpointHandler` is not used: it saves one step after the signal, adds its own counter
to the checkpoint, exits from inside its handler and watches SIGTERM only; the protocol here is the same idea
(agree on a step, every worker saves it) over one all-reduce per step.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_ssinfogan.cli import EXIT_PREEMPTED
from tf_ssinfogan.rundir.checkpoints import Checkpoints

log = logging.getLogger("tf_ssinfogan")


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint of the current step."""

    def __init__(self, signal_name: str, step: int, checkpoint: str):
        super().__init__(f"stopped by {signal_name} at step {step}; checkpoint {checkpoint} holds every "
                         "completed step, rerun the same command to resume")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


def epoch_segments(start: int, steps: int, steps_per_epoch: int):
    """`fit` calls (initial_epoch, epochs, steps_per_epoch, first_step, end_step) to train [start, steps):
    a partial epoch first when `start` is between epoch boundaries, then whole epochs."""
    segments = []
    epoch, offset = divmod(start, steps_per_epoch)
    if offset and start < steps:
        segments.append((epoch, epoch + 1, steps_per_epoch - offset, start, (epoch + 1) * steps_per_epoch))
        epoch, start = epoch + 1, (epoch + 1) * steps_per_epoch
    if start < steps:
        segments.append((epoch, steps // steps_per_epoch, steps_per_epoch, start, steps))
    return segments


# ------------------------------------------------------------------------------------------------- signals
class StopSignals:
    """Records SIGTERM/SIGINT instead of dying (first signal); a second one goes to the previous handler (the
    default action: stop at once).

    Use as a context manager around training; handlers are only installed from the main thread.
    """

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS):
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum, frame):
        if self.received is not None:  # second signal: the previous handler (by default: stop now)
            self.uninstall()
            signal.raise_signal(signum)
            return
        self.received = signum
        log.warning("received %s: finishing the current step, then saving a checkpoint and stopping "
                    "(send it again to stop at once)", signal.Signals(signum).name)

    def install(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            log.warning("training outside the main thread: SIGTERM/SIGINT will not save a checkpoint")
            return self
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        log.info("training: SIGTERM/SIGINT now checkpoint the current step and stop (exit status %d)",
                 EXIT_PREEMPTED)
        return self

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.uninstall()


def make_agreement(strategy: tf.distribute.Strategy) -> Optional[Callable[[np.ndarray], np.ndarray]]:
    """For multi-worker strategies, a function summing a small float vector over every replica of the cluster
    (one all-reduce per call, the same on every worker); None where one process holds every replica."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    local_replicas = len(strategy.extended.worker_devices)  # each adds its share of this worker's vector

    def replica_fn(v):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, v)

    def reduce(vector):  # eager: a graph-mode all-reduce here finds no device for its tensors
        return strategy.run(replica_fn, args=(vector / local_replicas,))

    def agree(vector: np.ndarray) -> np.ndarray:
        out = reduce(tf.constant(np.asarray(vector, np.float32)))
        return np.asarray(strategy.experimental_local_results(out)[0])

    return agree


class PreemptionCallback(keras.callbacks.Callback):
    """After each step: on a stop signal, save a checkpoint of this step and raise `Preempted`; every
    `every_seconds` (0 = off), save a checkpoint between the epoch-based ones.

    `epoch_save(step)` says whether the epoch-based callback saves at that step (no second save then);
    `agree` (multi-worker) makes every worker take the same decision at the same step.
    """

    def __init__(self, checkpoints: Checkpoints, signals: StopSignals, every_seconds: float = 0.0,
                 epoch_save: Callable[[int], bool] = lambda step: False, agree=None, is_chief: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.checkpoints, self.signals, self.every = checkpoints, signals, float(every_seconds)
        self.epoch_save, self.agree, self.is_chief, self.clock = epoch_save, agree, is_chief, clock
        self.last_save = clock()
        self.saved = []  # (step, reason) of the checkpoints written here

    def on_train_begin(self, logs=None):
        self.last_save = self.clock()
        self._check(stop_only=True)

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_train_end(self, logs=None):  # a signal during the last epoch-end work (grids, evaluation, save)
        self._check(stop_only=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_save(self.model.current_step()):
            self.last_save = self.clock()  # the epoch-based checkpoint restarts the period

    def _check(self, stop_only: bool = False):
        stop = 1.0 if self.signals.received is not None else 0.0
        due = 0.0
        if not stop_only and self.every > 0 and self.is_chief and self.clock() - self.last_save >= self.every:
            due = 1.0
        if self.agree is not None:  # every worker takes the same decision, at the same step
            stop, due = (float(v) > 0.5 for v in self.agree(np.array([stop, due], np.float32)))
        step = self.model.current_step()
        if stop:
            path = self._save(step, "signal")
            raise Preempted(self.signals.name or "a stop signal on another worker", step, path)
        if due and not self.epoch_save(step):
            self._save(step, "time")
            log.info("time-based checkpoint at step %d", step)

    def _save(self, step: int, reason: str) -> str:
        already = self.checkpoints.latest
        path = self.checkpoints.save(step)
        if path == already:  # this step was saved before
            return path
        self.saved.append((step, reason))
        self.last_save = self.clock()
        return path


class MetricStateResume(keras.callbacks.Callback):
    """Puts the restored metric state back after the reset at the start of the first (partial) epoch, so a run
    resumed between epoch boundaries logs the same epoch means as an uninterrupted one (at a boundary, the
    restored state is the finished epoch's and is left reset)."""

    def __init__(self, model, mid_epoch: bool):
        super().__init__()
        self.values = [[np.array(v.numpy()) for v in m.variables] for m in model.metrics] if mid_epoch else None

    def on_epoch_begin(self, epoch, logs=None):
        if self.values is None:
            return
        for m, values in zip(self.model.metrics, self.values):
            for v, value in zip(m.variables, values):
                v.assign(value)
        self.values = None
