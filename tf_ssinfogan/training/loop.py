"""A custom training loop over `strategy.run(model.train_step)`: the same step as `fit`, for strategies where
Keras 3's `fit` does not work (MultiWorkerMirroredStrategy) or when a plain loop is wanted (`--loop=custom`).

Keras callbacks are driven as `fit` drives them (train begin/end, epoch begin/end, batch end), so checkpoints,
grids, scalars and the NaN guard behave the same in both loops.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def make_step_function(model, strategy: tf.distribute.Strategy, jit_compile: bool = False):
    """One distributed training step: each replica runs `model.train_step` on its slice of the batch."""

    def replica_step(batch):
        model.train_step(batch)

    @tf.function(jit_compile=jit_compile)
    def step(iterator):
        strategy.run(replica_step, args=(next(iterator),))

    return step


def logs_of(model) -> dict:
    """The model's metrics, aggregated over replicas (read in cross-replica context)."""
    return {m.name: float(m.result()) for m in model.metrics}


def run_custom_loop(model, strategy, dataset, initial_epoch: int, epochs: int, steps_per_epoch: int,
                    callbacks=(), jit_compile: bool = False, first_epoch_steps: int = 0) -> dict:
    """Trains epochs [initial_epoch, epochs) of `steps_per_epoch` steps from a (distributed) dataset; the first
    one has `first_epoch_steps` steps if > 0 (a run resumed between epoch boundaries)."""
    cbs = keras.callbacks.CallbackList(list(callbacks), model=model)
    step = make_step_function(model, strategy, jit_compile)
    iterator = iter(dataset)
    logs = {}
    model.stop_training = False
    cbs.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for m in model.metrics:
            m.reset_state()
        cbs.on_epoch_begin(epoch)
        for batch in range(first_epoch_steps if epoch == initial_epoch and first_epoch_steps else steps_per_epoch):
            step(iterator)
            logs = logs_of(model)
            cbs.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return logs
