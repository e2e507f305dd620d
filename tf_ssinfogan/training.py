"""One training run from an `ExperimentConfig`: set-up, resume, fit, checkpoints, final evaluation, export.

Run folder layout:
  config.json          the resolved configuration (rewritten atomically each start)
  checkpoints/         tf.train.CheckpointManager (G, D/Q, optimisers, step, latent RNG state)
  logs/                TensorBoard scalars and image grids
  grids/               fixed-latent grid PNGs per code, named by step
  data_info.json       the training data: counts, labelled images, class names, licence (model_card.py)
  eval.json            final evaluation (Q_ss accuracy on the real test split; with final_classifier_eval
                       the independent classifier's accuracy on class-conditioned samples)
  samples_by_class.png class-conditioned sample grid
  export/ssinfogan/<v>/ SavedModel: generator and Q signatures (docs/serving.md), model card in assets.extra/
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from tf_ssinfogan import callbacks as cb
from tf_ssinfogan import data as data_lib
from tf_ssinfogan import evaluation
from tf_ssinfogan import model_card
from tf_ssinfogan.config import ConfigError, ExperimentConfig
from tf_ssinfogan.fileio import write_text_atomic
from tf_ssinfogan.model import SSInfoGAN, precision_policy
from tf_ssinfogan.optimizers import make_adam

log = logging.getLogger("tf_ssinfogan")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """'default' (one device), 'mirrored' (all local devices), 'multi_worker' (hosts named by TF_CONFIG)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder (the chief, or worker 0 when the cluster has no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def read_run_config(run_dir: str, hint: str = "") -> Optional[ExperimentConfig]:
    """The configuration saved in a run folder, or None if it has none; ConfigError if it is unreadable."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return ExperimentConfig.from_dict(json.load(f))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a valid run configuration ({e}){hint}") from None


def check_resume_compatible(run_dir: str, cfg: ExperimentConfig) -> None:
    """A run folder may be resumed with the same model; changing the latent spec or network is refused."""
    old = read_run_config(run_dir, hint="; use a new run_dir")
    if old is None:
        return
    for part in ("latent", "network"):
        if getattr(old, part) != getattr(cfg, part):
            raise ConfigError(
                f"run_dir {run_dir!r} holds a run with a different {part} configuration "
                f"({getattr(old, part)} vs {getattr(cfg, part)}); use a new run_dir to start afresh"
            )
    scaled = [p == "mixed_float16" for p in (old.train.precision, cfg.train.precision)]
    if scaled[0] != scaled[1]:  # the loss-scale optimiser changes what the checkpoint holds
        raise ConfigError(
            f"run_dir {run_dir!r} was trained with precision {old.train.precision!r}, which cannot be resumed "
            f"as {cfg.train.precision!r} (float16 loss scaling changes the checkpoint); use a new run_dir")


def build_model(cfg: ExperimentConfig, labelled_ratio: float) -> SSInfoGAN:
    """The model and its optimisers (call inside the strategy scope)."""
    t = cfg.train
    with precision_policy(t.precision):
        model = SSInfoGAN(cfg.latent, cfg.network, t.batch_size, ss_weight=t.ss_weight, us_weight=t.us_weight,
                          q_ss_on_fakes=labelled_ratio == 0.0,
                          q_ss_fake_weight=t.q_ss_fake_weight, skip_nonfinite=t.nan_policy == "skip", seed=t.seed,
                          instance_noise=t.instance_noise, reuse_fakes=t.reuse_fakes)

    def optimizer(lr, name):
        return make_adam(lr, t.beta_1, t.beta_2, name, fused=t.fused_adam, precision=t.precision)

    model.compile(d_optimizer=optimizer(t.d_learning_rate, "d_adam"),
                  g_optimizer=optimizer(t.g_learning_rate, "g_adam"), jit_compile=t.jit_compile)
    return model


def load_run(run_dir: str, checkpoint: str = ""):
    """(config, model) of a run folder, restored from its newest (or the given) checkpoint."""
    cfg = read_run_config(run_dir)
    if cfg is None:
        raise ConfigError(f"run_dir {run_dir!r} has no config.json (not a training run folder)")
    checkpoint = checkpoint or tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if not checkpoint:
        raise ConfigError(f"run_dir {run_dir!r} has no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    model = build_model(cfg, cfg.data.labelled_fraction)
    cb.make_checkpoint(model).restore(checkpoint).expect_partial()
    return cfg, model


@dataclasses.dataclass
class RunResult:
    run_dir: str
    step: int
    seconds: float
    eval: Optional[dict]
    export_path: Optional[str]


def train(cfg: ExperimentConfig, source: Optional[data_lib.ArraySource] = None,
          extra_callbacks=()) -> RunResult:
    """Trains (or resumes) the run in `cfg.run_dir`. `source` overrides `cfg.data` (tests, in-memory data)."""
    cfg.validate()
    t = cfg.train
    check_resume_compatible(cfg.run_dir, cfg)
    source = source if source is not None else data_lib.load_source(cfg.data)
    data_lib.check_source_matches(source, cfg.latent, cfg.network.image_shape)
    keras.utils.set_random_seed(t.seed)
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(t.strategy)
    if t.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch_size {t.batch_size} is not divisible by the {strategy.num_replicas_in_sync} replicas")
    stream = data_lib.TrainStream(source, cfg.latent, cfg.data, t.batch_size, cfg.network.data_range)
    log.info("data %s: %d train images, %d labelled (%.3f%%)", source.name, stream.num_train,
             stream.num_labelled, 100 * stream.labelled_ratio)

    chief = is_chief(strategy)
    if chief:
        os.makedirs(cfg.run_dir, exist_ok=True)
        write_text_atomic(os.path.join(cfg.run_dir, "config.json"), cfg.to_json() + "\n")
        model_card.write_data_info(cfg.run_dir, model_card.data_facts(cfg, source, stream.num_labelled))
    with strategy.scope():
        model = build_model(cfg, stream.labelled_ratio)
    ckpt = cb.make_checkpoint(model)
    ckpt_dir = os.path.join(cfg.run_dir, "checkpoints")
    # Every worker takes part in saving (collectives); only the chief's copy is kept in the run folder.
    save_dir = ckpt_dir if chief else os.path.join(
        cfg.run_dir, f".worker_{strategy.cluster_resolver.task_id}_checkpoints")
    manager = tf.train.CheckpointManager(ckpt, save_dir, t.max_checkpoints)
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
        log.info("resumed from %s at step %d", latest, model.current_step())
    start = model.current_step()
    if start % t.steps_per_epoch:
        raise ConfigError(f"checkpoint step {start} is not at an epoch boundary of {t.steps_per_epoch} steps")
    total_epochs = t.steps // t.steps_per_epoch
    classifier = classifier_meta = None
    eval_path = os.path.join(cfg.run_dir, "eval.json")
    final_eval_due = model.current_step() < t.steps or not os.path.exists(eval_path)
    if chief and (t.eval_every_epochs and start < t.steps or t.final_classifier_eval and final_eval_due):
        label, classes = evaluation.classifier_target(cfg.latent) or ("label", 10)
        t_classifier = time.perf_counter()
        classifier, classifier_meta = evaluation.get_classifier(source, t.classifier_path, label, classes)
        log.info("independent classifier ready in %.1f s (accuracy on the train split: %.4f)",
                 time.perf_counter() - t_classifier, classifier_meta.get("validation_accuracy_on_train_split", -1))
    initial_epoch = start // t.steps_per_epoch
    t0 = time.perf_counter()
    if start < t.steps:
        dataset = stream.distributed_dataset(strategy, start, t.steps) \
            if strategy.num_replicas_in_sync > 1 else stream.dataset(start, t.steps)
        logs_dir = os.path.join(cfg.run_dir, "logs")
        callbacks = [
            cb.NaNGuard(),
            cb.ScalarLogger(os.path.join(logs_dir, "train"), stream, t.batch_size),
            cb.ImageGridCallback(os.path.join(cfg.run_dir, "grids"), os.path.join(logs_dir, "train"),
                                 t.grid_every_epochs, total_epochs),
            cb.CheckpointCallback(manager, t.checkpoint_every_epochs, total_epochs),
            *extra_callbacks,
        ] if chief else [cb.NaNGuard(), cb.CheckpointCallback(manager, t.checkpoint_every_epochs, total_epochs)]
        if t.eval_every_epochs and chief:
            callbacks.insert(3, evaluation.EvaluationCallback(
                source, classifier, classifier_meta, os.path.join(logs_dir, "eval"), t.eval_every_epochs,
                history_path=os.path.join(cfg.run_dir, "eval_history.jsonl")))
        if t.loop == "custom" or t.strategy == "multi_worker":  # Keras 3 fit fails under multi-worker
            from tf_ssinfogan.loop import run_custom_loop

            run_custom_loop(model, strategy, dataset, initial_epoch, total_epochs, t.steps_per_epoch, callbacks,
                            t.jit_compile)
        else:
            model.fit(dataset, epochs=total_epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=t.steps_per_epoch, callbacks=callbacks, verbose=t.verbose, shuffle=False)
    seconds = time.perf_counter() - t0
    result = RunResult(cfg.run_dir, model.current_step(), seconds, None, None)
    # eval.json marks a finished run: it is written last, so a run killed before it redoes the final steps
    # (an export that already happened is then written again as a new version, never over the old one).
    if chief and model.current_step() >= t.steps and (start < t.steps or not os.path.exists(eval_path)):
        result.eval = evaluation.final_evaluation(
            model, source, cfg.run_dir, classifier if t.final_classifier_eval else None, classifier_meta, write=False)
        if t.export_at_end:
            from tf_ssinfogan import serving  # import here: keeps training importable without export deps

            card = model_card.card_data(cfg, model.current_step(), cfg.run_dir, result.eval)
            result.export_path = serving.export_saved_model(model, os.path.join(cfg.run_dir, "export"), card=card)
            log.info("exported generator to %s", result.export_path)
        evaluation.write_final_evaluation(cfg.run_dir, result.eval)
    return result
