"""Checkpoints of a run, in this one module: make (every variable a resume needs), save (`Checkpoints.save`, once
per step; a failed write names its path), verify, restore the newest readable one (a damaged newest one falls back
to the previous), and a run's model. Training's callbacks only call `Checkpoints.save`.

On resume the newest readable checkpoint is used: a damaged newest one is skipped with a warning naming both; if
none can be read, `CheckpointError` and nothing is deleted. A failed write (full disk, read-only or missing
folder) raises `WriteError` naming the path.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
from typing import Callable, List, Optional, Tuple

import tensorflow as tf

from tf_ssinfogan.config import ConfigError, ExperimentConfig
from tf_ssinfogan.rundir.fileio import WriteError
from tf_ssinfogan.rundir.paths import CONFIG, RunDir, labelled_ratio, read_config

log = logging.getLogger("tf_ssinfogan")


class CheckpointError(RuntimeError):
    """No checkpoint of a run folder can be read."""


# ------------------------------------------------------------------------------------------------ writing
def write_error(path: str, what: str, error: BaseException, intact: Optional[str] = None) -> WriteError:
    """A `WriteError` naming `path`, the reason and (optionally) the checkpoint that is left intact."""
    reason = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
    reason = re.sub(r"\s*\[Op:\w+\]", "", re.sub(r"\{\{.*?\}\}\s*", "", reason)).strip()  # TF op decoration
    message = f"cannot write {what} {path}: {reason}"
    if intact is not None:
        message += f"; the last good checkpoint {intact or '(none yet)'} is intact"
    return WriteError(message, getattr(error, "errno", None))


@contextlib.contextmanager
def writing(path: str, what: str, intact: Optional[str] = None):
    """Turns an OS or TensorFlow I/O error raised inside into a `WriteError` naming `path`."""
    try:
        yield
    except WriteError:  # already names its file
        raise
    except (OSError, tf.errors.OpError) as e:
        raise write_error(path, what, e, intact) from e


def save_checkpoint(manager: tf.train.CheckpointManager, step: int) -> str:
    """`manager.save` numbered by step; a failed write raises `WriteError` (the previous checkpoint stays)."""
    intact = manager.latest_checkpoint or ""
    target = os.path.join(manager.directory, f"ckpt-{step}")
    try:
        with writing(target, "checkpoint", intact=intact):
            return manager.save(checkpoint_number=step)
    except WriteError:
        shutil.rmtree(target + "_temp", ignore_errors=True)  # TensorFlow's partial files: free the space
        raise


class Checkpoints:
    """The checkpoints of one model in one folder (a `tf.train.CheckpointManager`): `save(step)` writes each step
    once, `restore_newest(folder)` resumes from the newest readable one."""

    def __init__(self, manager: tf.train.CheckpointManager, model=None):
        self.manager, self.model = manager, model

    @classmethod
    def of_model(cls, model, directory: str, max_to_keep: int) -> "Checkpoints":
        return cls(tf.train.CheckpointManager(make_checkpoint(model), directory, max_to_keep), model)

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        """The checkpoint of `step`: written now, or the one already written at that step."""
        if self.latest and _number(self.latest) == step:
            return self.latest
        return save_checkpoint(self.manager, step)

    def restore_newest(self, directory: str) -> Optional[str]:
        """`restore_newest_readable` of `directory` into this model; its prefix, or None when there is none."""
        return restore_newest_readable(lambda with_metrics: make_checkpoint(self.model, with_metrics), directory)


# ------------------------------------------------------------------------------------------------ resuming
def _number(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    return int(m.group(1)) if m else -1


def checkpoint_candidates(ckpt_dir: str) -> List[str]:
    """Checkpoint prefixes of a folder, newest first: those the state file lists, or (if the state file is
    missing or unreadable) every `*.index` found."""
    listed: List[str] = []
    try:
        state = tf.train.get_checkpoint_state(ckpt_dir)
        if state is not None:
            listed = [p if os.path.isabs(p) else os.path.join(ckpt_dir, p)
                      for p in state.all_model_checkpoint_paths] or [state.model_checkpoint_path]
            newest = state.model_checkpoint_path
            newest = newest if os.path.isabs(newest) else os.path.join(ckpt_dir, newest)
            listed = [newest] + [p for p in sorted(listed, key=_number, reverse=True) if p != newest]
    except Exception as e:  # a damaged state file: fall back to the files themselves
        log.warning("checkpoint state file in %s cannot be read (%s); looking at the checkpoint files", ckpt_dir,
                    _short(e))
    if not listed:
        listed = sorted((p[:-len(".index")] for p in glob.glob(os.path.join(ckpt_dir, "*.index"))),
                        key=_number, reverse=True)
    return listed


def _short(e: BaseException) -> str:
    text = (getattr(e, "message", None) or str(e) or type(e).__name__).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def verify_checkpoint(prefix: str) -> None:
    """Reads every tensor of a checkpoint (checksums included); raises if any file is missing or damaged."""
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)


def restore_newest_readable(make_checkpoint: Callable[[bool], tf.train.Checkpoint], ckpt_dir: str
                            ) -> Optional[str]:
    """Restores the newest checkpoint of `ckpt_dir` that reads completely; returns its prefix (None if there is
    none). `make_checkpoint(with_metrics)` builds the checkpoint object (older checkpoints hold no metrics).

    A damaged newest checkpoint is skipped with a warning naming it and the one used; `CheckpointError` if
    checkpoints exist and none can be read. Nothing is deleted.
    """
    candidates = checkpoint_candidates(ckpt_dir)
    failures = []
    for prefix in candidates:
        try:
            verify_checkpoint(prefix)
            names = {n for n, _ in tf.train.list_variables(prefix)}
            has_metrics = any(n.startswith("metrics/") for n in names)
            make_checkpoint(has_metrics).restore(prefix).assert_existing_objects_matched()
        except Exception as e:  # truncated, corrupt or missing files; a checkpoint of another model
            failures.append(f"{prefix} ({_short(e)})")
            continue
        if failures:
            log.warning("checkpoint %s cannot be read; resuming from the previous one, %s. Unreadable: %s",
                        failures[0].split(" (")[0], prefix, "; ".join(failures))
        return prefix
    if failures:
        raise CheckpointError(
            f"no checkpoint in {ckpt_dir} can be read: {'; '.join(failures)}. Nothing was deleted: move the "
            "damaged files away (or the folder, to start afresh) and rerun")
    return None


# ------------------------------------------------------------------------------------------ model
def _variables_by_path(model) -> dict:
    # Keras 3 models are not tracked as tf.train.Checkpoint children: name every variable explicitly.
    named = {v.path.replace("/", "."): v for v in model.variables}
    if len(named) != len(model.variables):
        raise ValueError(f"{model.name}: variable paths are not unique; give its layers distinct names")
    return named


def make_checkpoint(model, with_metrics: bool = True):
    """Everything a resume needs: every variable of G and D/Q (BN statistics too), both optimisers (with
    their step counters), the latent RNG state and the running epoch metrics (for a mid-epoch resume;
    `with_metrics=False` reads checkpoints written before they were saved).

    The data-schedule position is the step itself (the stream is indexed by step, see data/stream.py).
    """
    parts = dict(
        generator=_variables_by_path(model.generator),
        discriminator=_variables_by_path(model.discriminator),
        d_optimizer=model.d_optimizer,
        g_optimizer=model.g_optimizer,
        latent_seed=model.seed_generator.state,
    )
    if with_metrics:
        parts["metrics"] = {f"{m.name}.{v.name}": v for m in model.metrics for v in m.variables}
    return tf.train.Checkpoint(**parts)


def build_model(cfg: ExperimentConfig, labelled_ratio: float):
    """The `SSInfoGAN` of a configuration and its optimisers (call inside the strategy scope).

    With no labelled example (ratio 0, plain InfoGAN) Q_ss also learns from fakes.
    """
    from tf_ssinfogan.model.ssinfogan import SSInfoGAN, precision_policy
    from tf_ssinfogan.model.optimizers import make_adam

    t = cfg.train
    with precision_policy(t.precision):
        model = SSInfoGAN.from_config(cfg, labelled_ratio)

    def optimizer(lr, name, ema=0.0):
        return make_adam(lr, t.beta_1, t.beta_2, name, fused=t.fused_adam, precision=t.precision, ema_momentum=ema)

    model.compile(d_optimizer=optimizer(t.d_learning_rate, "d_adam", t.d_average),
                  g_optimizer=optimizer(t.g_learning_rate, "g_adam", t.g_average), jit_compile=t.jit_compile)
    return model


def load_run(run_dir: str, checkpoint: str = "") -> Tuple[ExperimentConfig, object]:
    """(config, model) of a run folder, restored from its newest readable (or the given) checkpoint, for
    inference: the networks hold their averaged weights where the run kept moving averages."""
    cfg = read_config(run_dir)
    if cfg is None:
        raise ConfigError(f"run_dir {run_dir!r} has no {CONFIG} (not a training run folder)")
    rd = RunDir(run_dir)
    model = build_model(cfg, labelled_ratio(run_dir, cfg))
    if checkpoint:
        make_checkpoint(model).restore(checkpoint).expect_partial()
    else:  # the newest that reads completely (a damaged newest one falls back, with a warning naming both)
        try:
            checkpoint = restore_newest_readable(lambda with_metrics: make_checkpoint(model, with_metrics),
                                                            rd.checkpoints)
        except CheckpointError as e:
            raise ConfigError(str(e)) from None
        if not checkpoint:
            raise ConfigError(f"run_dir {run_dir!r} has no checkpoint in {rd.checkpoints}")
    model.use_averaged_weights()  # the moving averages, where the run kept them (--d_average, --g_average)
    return cfg, model
