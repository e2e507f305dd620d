"""The run folder: every path in it, its configuration and resume compatibility (checkpoints and the model of
a run: `rundir.checkpoints`).

Layout of `<run_dir>/`:
  config.json            the resolved `ExperimentConfig` (rewritten atomically at each start)
  flags.txt              the same as flags, for `--flagfile` (written by the train CLI)
  data_info.json         what the data gave: train images, labelled images and their measured fraction (which
                         `labelled_count` can make differ from the configured `labelled_fraction`)
  checkpoints/           tf.train.CheckpointManager: G, D/Q, both optimisers, the step, the latent RNG state
  logs/train, logs/eval  TensorBoard scalars and image grids
  grids/                 fixed-latent grid PNGs per code, named by step
  eval.json              the final evaluation; written last, it marks a finished run
  samples_by_class.png   class-conditioned sample grid
  eval_history.jsonl     evaluations during training (--eval_every_epochs)
  evaluation/            `tf_ssinfogan.evaluate` reports and grids
  export/<name>/<v>/     SavedModel versions (TF Serving layout; `serving/saved_model.py`)

Training, evaluation and export use this module for every path of a run. It does not import TensorFlow, so
that CLIs can check a run folder before TensorFlow loads.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from tf_ssinfogan.config import ConfigError, ExperimentConfig
from tf_ssinfogan.rundir.fileio import write_text_atomic

CONFIG = "config.json"
FLAGS_FILE = "flags.txt"
DATA_INFO = "data_info.json"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
GRIDS = "grids"
EVAL = "eval.json"
SAMPLES_BY_CLASS = "samples_by_class.png"
EVAL_HISTORY = "eval_history.jsonl"
EVALUATION = "evaluation"
EXPORT = "export"


class RunDir:
    """The paths of one run folder."""

    def __init__(self, path: str):
        self.path = path

    def _join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    config = property(lambda self: self._join(CONFIG))
    flags_file = property(lambda self: self._join(FLAGS_FILE))
    data_info = property(lambda self: self._join(DATA_INFO))
    checkpoints = property(lambda self: self._join(CHECKPOINTS))
    train_logs = property(lambda self: self._join(LOGS, "train"))
    eval_logs = property(lambda self: self._join(LOGS, "eval"))
    grids = property(lambda self: self._join(GRIDS))
    eval_json = property(lambda self: self._join(EVAL))
    samples_by_class = property(lambda self: self._join(SAMPLES_BY_CLASS))
    eval_history = property(lambda self: self._join(EVAL_HISTORY))
    evaluation = property(lambda self: self._join(EVALUATION))
    export_base = property(lambda self: self._join(EXPORT))

    def worker_checkpoints(self, task_id: int) -> str:
        """Scratch checkpoint folder of a non-chief worker (collective saves need every worker to write)."""
        return self._join(f".worker_{task_id}_checkpoints")

    def is_run(self) -> bool:
        return os.path.isfile(self.config)


# ------------------------------------------------------------------------------------------ configuration
def read_config(run_dir: str, hint: str = "") -> Optional[ExperimentConfig]:
    """The configuration saved in a run folder, or None if it has none; ConfigError if it is unreadable."""
    path = RunDir(run_dir).config
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return ExperimentConfig.from_dict(json.load(f))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a valid run configuration ({e}){hint}") from None


def write_config(cfg: ExperimentConfig, flags_text: str = "") -> str:
    """Writes config.json (and flags.txt when the CLI's flags are given) atomically; returns config.json's path."""
    os.makedirs(cfg.run_dir, exist_ok=True)
    if flags_text:
        write_text_atomic(RunDir(cfg.run_dir).flags_file, flags_text)
    return write_text_atomic(RunDir(cfg.run_dir).config, cfg.to_json() + "\n")


def write_data_info(run_dir: str, facts: dict) -> str:
    """Writes data_info.json: what `model_card.data_facts` says about the training data (its counts and the
    measured 'labelled_fraction' among them)."""
    return write_text_atomic(RunDir(run_dir).data_info, json.dumps(facts, indent=2) + "\n")


def labelled_ratio(run_dir: str, cfg: ExperimentConfig) -> float:
    """The labelled fraction the run trained with, as measured (data_info.json); for older runs derived from
    the config (0 when no example is labelled, else the configured fraction)."""
    try:
        with open(RunDir(run_dir).data_info) as f:
            return float(json.load(f)["labelled_fraction"])
    except (OSError, ValueError, KeyError, TypeError):
        if cfg.data.labelled_count == 0 or not cfg.latent.semi_supervised_codes:
            return 0.0
        return cfg.data.labelled_fraction


def check_resume_compatible(run_dir: str, cfg: ExperimentConfig) -> None:
    """A run folder may be resumed with the same model; changing the latent spec or network is refused."""
    old = read_config(run_dir, hint="; use a new run_dir")
    if old is None:
        return
    for part in ("latent", "network"):
        if getattr(old, part) != getattr(cfg, part):
            raise ConfigError(
                f"run_dir {run_dir!r} holds a run with a different {part} configuration "
                f"({getattr(old, part)} vs {getattr(cfg, part)}); use a new run_dir to start afresh"
            )
    # float32 and mixed_bfloat16 checkpoints hold the same float32 variables, so a run started with --precision=auto
    # (config.json records what it resolved to) resumes on a machine where auto picks the other one
    scaled = [p == "mixed_float16" for p in (old.train.precision, cfg.train.precision)]
    if scaled[0] != scaled[1]:  # the loss-scale optimiser changes what the checkpoint holds
        raise ConfigError(
            f"run_dir {run_dir!r} was trained with precision {old.train.precision!r}, which cannot be resumed "
            f"as {cfg.train.precision!r} (float16 loss scaling changes the checkpoint); use a new run_dir")
