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

import os

from absl import flags

from tf_ssinfogan import cli

flags.DEFINE_string("run_dir", None, "Training run folder (config.json + checkpoints/).")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix; empty = the newest in run_dir.")
flags.DEFINE_list("metrics", ["codes", "judge_fd", "info"], "Metrics: codes (judges and Q per code), judge_fd "
                  "(Frechet distance in a judge's features, offline), info (information bounds), fid, kid, is "
                  "(InceptionV3, ImageNet weights), or 'all'.")
flags.DEFINE_string("classifier_path", "", "Judge (.keras) of the first categorical code; empty = the cache.")
flags.DEFINE_enum("judge_architecture", "auto", ["auto", "mnist_cnn", "resnet"], "Judge network: auto = "
                  "mnist_cnn for 28x28x1 images (the paper's CNN), resnet (small residual CNN) otherwise.")
flags.DEFINE_integer("judge_epochs", 0, "Epochs of a judge trained now; 0 = the architecture's default.")
flags.DEFINE_bool("judge_augment", False, "Judges trained now learn from shifted and rotated copies of the test "
                  "split (a stronger judge, cached apart from the default one).")
flags.DEFINE_integer("per_class", 128, "Samples per value of a categorical code, or per bit value of a binary "
                     "code (paper: 128).")
flags.DEFINE_integer("continuous_samples", 1000, "Samples for the correlation of a continuous code.")
flags.DEFINE_integer("fid_samples", 2000, "Real and generated images for the judge-feature Frechet distance.")
flags.DEFINE_integer("num_samples", 10000, "Generated images (and real test images, at most the split) for "
                     "FID, KID and IS.")
flags.DEFINE_string("inception_weights", "", "InceptionV3 weights .h5 file (Keras's ImageNet file; the "
                    "variant with the head is needed for IS); empty = the Keras cache (~/.keras/models).")
flags.DEFINE_integer("kid_subsets", 100, "KID: number of random subsets.")
flags.DEFINE_integer("kid_subset_size", 1000, "KID: images per subset.")
flags.DEFINE_integer("is_splits", 10, "Inception Score: number of splits.")
FLAGS = flags.FLAGS


def main(argv):
    cli.require(bool(FLAGS.run_dir), "--run_dir is required")
    import tensorflow as tf

    from tf_ssinfogan.evaluation import factors, inception, judges, report
    from tf_ssinfogan.rundir import checkpoints, paths
    from tf_ssinfogan.data.sources import check_source_matches, load_source

    names = report.METRICS if FLAGS.metrics == ["all"] else tuple(FLAGS.metrics)
    try:
        cfg_eval = report.EvalConfig(
            metrics=names, per_class=FLAGS.per_class, continuous_samples=FLAGS.continuous_samples,
            judge_fd_samples=FLAGS.fid_samples, num_samples=FLAGS.num_samples, kid_subsets=FLAGS.kid_subsets,
            kid_subset_size=FLAGS.kid_subset_size, is_splits=FLAGS.is_splits,
            inception_weights=FLAGS.inception_weights).validate()
        judge_cfg = judges.JudgeConfig(architecture=FLAGS.judge_architecture, epochs=FLAGS.judge_epochs,
                                       augment=FLAGS.judge_augment)
        judge_cfg.validate()
        extractor, extractor_info = None, None
        if cfg_eval.needs_inception:  # before anything is loaded or written
            extractor = inception.imagenet_extractor(FLAGS.inception_weights, need_top="is" in names)
            extractor_info = {"weights": inception.resolve_weights(FLAGS.inception_weights, "is" in names),
                              "input_size": inception.INPUT_SIZE}
        cfg, model = checkpoints.load_run(FLAGS.run_dir, FLAGS.checkpoint)
        source = load_source(cfg.data)
        check_source_matches(source, cfg.latent, cfg.network.image_shape)
        found, category = {}, None
        if "codes" in names or "judge_fd" in names:
            found = judges.judges_for(cfg.latent.codes, source, judge_cfg, FLAGS.classifier_path)
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
