"""One training run from an `ExperimentConfig`: set-up, resume, fit, checkpoints, final evaluation, export.

The run folder's layout, its configuration and the model of a run are `rundir`'s (`rundir/paths.py`, `rundir/checkpoints.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from tf_ssinfogan.config import CodeSpec, ConfigError, ExperimentConfig, JudgeConfig
from tf_ssinfogan.data import sources
from tf_ssinfogan.data import stream as data_lib
from tf_ssinfogan.evaluation import factors, judges, report
from tf_ssinfogan.model.ssinfogan import resolved_precision
from tf_ssinfogan.rundir import checkpoints, paths
from tf_ssinfogan.serving import model_card, saved_model
from tf_ssinfogan.training import callbacks as cb
from tf_ssinfogan.training import preemption

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


@dataclasses.dataclass
class RunResult:
    run_dir: str
    step: int
    seconds: float
    eval: Optional[dict]
    export_path: Optional[str]


def _evaluation_callback(cfg: ExperimentConfig, source, rd) -> keras.callbacks.Callback:
    """The evaluation during training (`--eval_every_epochs`): its judges, built or loaded now."""
    found = judges.judges_for(cfg.latent.codes, source, cfg.judge)
    return report.EvaluationCallback(
        source, found, judges.category_judge(cfg.latent.codes, found, source, cfg.judge), rd.eval_logs,
        cfg.train.eval_every_epochs, history_path=rd.eval_history,
        extra_scores=lambda m: factors.built_data_scores(m, cfg.data.source, source))


def train(cfg: ExperimentConfig, source: Optional[sources.ArraySource] = None,
          extra_callbacks=(), flags_text: str = "") -> RunResult:
    """Trains (or resumes) the run in `cfg.run_dir`. `source` overrides `cfg.data` (tests, in-memory data);
    `flags_text` (the CLI's flags) is written to the run folder once the run is known to be resumable."""
    cfg.validate()
    if cfg.train.precision == "auto":  # decided on this machine; config.json records the choice
        precision, why = resolved_precision("auto")
        log.info("precision auto: %s (%s)", precision, why)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=precision))
    t = cfg.train
    paths.check_resume_compatible(cfg.run_dir, cfg)
    rd = paths.RunDir(cfg.run_dir)
    source = source if source is not None else sources.load_source(cfg.data)
    sources.check_source_matches(source, cfg.latent, cfg.network.image_shape)
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
    warning = cfg.supervision_warning() if stream.num_labelled else None
    if warning:
        log.warning(warning)

    chief = is_chief(strategy)
    if chief:
        paths.write_config(cfg, flags_text)
        paths.write_data_info(cfg.run_dir, model_card.data_facts(cfg, source, stream.num_labelled))
    with strategy.scope():
        model = checkpoints.build_model(cfg, stream.labelled_ratio)
    # Every worker takes part in saving (collectives); only the chief's copy is kept in the run folder.
    save_dir = rd.checkpoints if chief else rd.worker_checkpoints(strategy.cluster_resolver.task_id)
    saver = checkpoints.Checkpoints.of_model(model, save_dir, t.max_checkpoints)
    # the newest readable checkpoint (a damaged newest one falls back to the previous, with a warning)
    latest = saver.restore_newest(rd.checkpoints)
    if latest:
        log.info("resumed from %s at step %d", latest, model.current_step())
    start = model.current_step()  # may be between epoch boundaries (time-based or signal checkpoints)
    total_epochs = t.steps // t.steps_per_epoch
    classifier = classifier_meta = None  # the independent classifier of the final evaluation (final_classifier_eval)
    final_eval_due = start < t.steps or not os.path.exists(rd.eval_json)
    if chief and t.final_classifier_eval and final_eval_due:
        label, classes = judges.classifier_target(cfg.latent) or ("label", 10)
        t_classifier = time.perf_counter()
        code = CodeSpec(label, "categorical", classes, label)
        # the paper's CNN (by default its 5-epoch recipe, at judges.judge_path), or for CIFAR-10-
        # like data the judge of the 'train_split' recipe (judges.resolve), as the evaluation's
        recipe = judges.resolve(source, code, JudgeConfig())[0]
        architecture = cfg.judge.architecture if cfg.judge.architecture != "auto" else \
            "mnist_cnn" if recipe == "paper" else "auto"
        judge = judges.get_judge(source, code, dataclasses.replace(cfg.judge, architecture=architecture, recipe=recipe),
                                 cfg.judge.classifier_path)
        classifier, classifier_meta = judge.model, judge.meta
        log.info("independent classifier ready in %.1f s (accuracy on the %s split: %.4f)",
                 time.perf_counter() - t_classifier, judge.meta.get("held_out_split", "train"),
                 judge.held_out.get("value", -1))
    initial_epoch = start // t.steps_per_epoch
    t0 = time.perf_counter()
    if start < t.steps:
        def make_dataset(first, end):
            return stream.distributed_dataset(strategy, first, end) \
                if strategy.num_replicas_in_sync > 1 else stream.dataset(first, end)

        spe, every = t.steps_per_epoch, t.checkpoint_every_epochs
        guard = preemption.PreemptionCallback(
            saver, preemption.StopSignals(), 60.0 * t.checkpoint_every_minutes,
            epoch_save=lambda s: s % spe == 0 and (s // spe % every == 0 or s == t.steps),
            agree=preemption.make_agreement(strategy), is_chief=chief)
        named = {  # in the order Keras calls them; None: not in this run (the chief alone logs and evaluates)
            "metric_state": preemption.MetricStateResume(model, mid_epoch=start % spe != 0),
            "nan_guard": cb.NaNGuard(),
            "scalars": cb.ScalarLogger(rd.train_logs, stream, t.batch_size) if chief else None,
            "grids": cb.ImageGridCallback(rd.grids, rd.train_logs, t.grid_every_epochs, total_epochs) if chief
            else None,
            "evaluation": _evaluation_callback(cfg, source, rd) if t.eval_every_epochs and chief else None,
            "checkpoint": cb.CheckpointCallback(saver, t.checkpoint_every_epochs, total_epochs),
        }
        callbacks = [c for c in named.values() if c is not None] + (list(extra_callbacks) if chief else []) + [guard]
        with guard.signals:  # SIGTERM/SIGINT: finish the step, checkpoint it, raise preemption.Preempted
            if t.loop == "custom" or t.strategy == "multi_worker":  # Keras 3 fit fails under multi-worker
                from tf_ssinfogan.training.loop import run_custom_loop

                run_custom_loop(model, strategy, make_dataset(start, t.steps), initial_epoch, total_epochs, spe,
                                callbacks, t.jit_compile, first_epoch_steps=spe - start % spe)
            else:  # a partial first epoch when resuming between epoch boundaries, then whole epochs
                for first_epoch, epochs, steps, first, end in preemption.epoch_segments(start, t.steps, spe):
                    model.fit(make_dataset(first, end), epochs=epochs, initial_epoch=first_epoch,
                              steps_per_epoch=steps, callbacks=callbacks, verbose=t.verbose, shuffle=False)
    seconds = time.perf_counter() - t0
    result = RunResult(cfg.run_dir, model.current_step(), seconds, None, None)
    # eval.json marks a finished run: it is written last, so a run killed before it redoes the final steps
    # (an export that already happened is then written again as a new version, never over the old one).
    if chief and model.current_step() >= t.steps and final_eval_due:
        if model.use_averaged_weights():  # the checkpoints keep the raw weights and the average
            log.info("final evaluation and export with the moving-average weights (d_average %g, g_average %g)",
                     t.d_average, t.g_average)
        result.eval = report.final_evaluation(model, source, cfg.run_dir, classifier, classifier_meta, write=False)
        if t.export_at_end:
            card = model_card.card_data(cfg, model.current_step(), cfg.run_dir, result.eval)
            with checkpoints.writing(rd.export_base, "the export to"):
                result.export_path = saved_model.export_saved_model(model, rd.export_base, card=card)
            log.info("exported generator to %s", result.export_path)
        report.write_final_evaluation(cfg.run_dir, result.eval)
    return result
