"""Evaluate a training run: per-code judges, Q on real images, FID/KID/IS, information bounds, grids.

  python -m tf_ssinfogan.evaluate --run_dir=runs/mnist                       # offline metrics
  python -m tf_ssinfogan.evaluate --run_dir=runs/cifar --metrics=fid,kid,is --num_samples=10000

Writes `<run_dir>/evaluation/eval_<step>.json` (every figure), `report_<step>.md` and `report.md` (a Markdown
table: every metric, each judge's own held-out figure, the grids), traversal grids in `<run_dir>/evaluation/`,
and the scalars to TensorBoard under `<run_dir>/logs/eval`. Judges (one per label column and code kind) are
loaded from the cache, or trained and cached on first use (`tf_ssinfogan.train_classifier`). FID/KID/IS need
InceptionV3's ImageNet weights from the Keras cache or --inception_weights; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

from tf_ssinfogan import cli
from tf_ssinfogan.config import METRICS

flags.DEFINE_string("run_dir", None, "Training run folder (config.json + checkpoints/).")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix; empty = the newest in run_dir.")
cli.define_config_flags(sections=("evaluation", "judge"), run_dir=False)  # config.EvalConfig, config.JudgeConfig
FLAGS = flags.FLAGS


def main(argv):
    cli.require(bool(FLAGS.run_dir), "--run_dir is required")
    import tensorflow as tf

    from tf_ssinfogan.evaluation import factors, inception, judges, report
    from tf_ssinfogan.rundir import checkpoints, paths
    from tf_ssinfogan.data.sources import check_source_matches, load_source

    cfg_eval = cli.section_from_flags("evaluation")
    if cfg_eval.metrics == ("all",):
        cfg_eval = dataclasses.replace(cfg_eval, metrics=METRICS)
    names = cfg_eval.metrics
    judge_cfg = cli.section_from_flags("judge")
    try:
        cfg_eval.validate()
        judge_cfg.validate()
        extractor, extractor_info = None, None
        if cfg_eval.needs_inception:  # before anything is loaded or written
            extractor = inception.imagenet_extractor(cfg_eval.inception_weights, need_top="is" in names)
            extractor_info = {"weights": inception.resolve_weights(cfg_eval.inception_weights, "is" in names),
                              "input_size": inception.INPUT_SIZE}
        cfg, model = checkpoints.load_run(FLAGS.run_dir, FLAGS.checkpoint)
        source = load_source(cfg.data)
        check_source_matches(source, cfg.latent, cfg.network.image_shape)
        found, category = {}, None
        if "codes" in names or "judge_fd" in names:
            found = judges.judges_for(cfg.latent.codes, source, judge_cfg)
            category = judges.category_judge(cfg.latent.codes, found, source, judge_cfg)
    except ValueError as e:  # e.g. a judge file that is not a Keras model
        raise cli.UsageError(str(e)) from None
    rd = paths.RunDir(FLAGS.run_dir)
    out_dir = rd.evaluation
    result = report.evaluate(model, source, cfg_eval, found, category, extractor, grids_dir=out_dir,
                                extractor_info=extractor_info)
    result.update(factors.built_data_scores(model, cfg.data.source, source))  # judge-free, on built data only
    title = os.path.basename(os.path.normpath(FLAGS.run_dir))
    json_path, md_path = report.write_report(result, out_dir, title)
    values = report.scalars(result)
    writer = tf.summary.create_file_writer(rd.eval_logs)
    with writer.as_default(step=result["step"]):
        for tag, value in values.items():
            tf.summary.scalar(tag, value)
    writer.flush()
    print(report.markdown_report(result, title))
    print(f"written: {json_path}, {md_path}")
    return 0


def run():
    """Console script `tf-ssinfogan-evaluate` (same flags as `python -m tf_ssinfogan.evaluate`)."""
    cli.run(main, section="evaluation")


if __name__ == "__main__":
    run()
