"""Evaluate a training run with the paper's metrics.

  python -m tf_ssinfogan.evaluate --run_dir=runs/mnist

Writes `<run_dir>/evaluation/eval_<step>.json` (every metric), traversal grids in `<run_dir>/evaluation/`, and
the scalars to TensorBoard under `<run_dir>/logs/eval`. The independent classifier is loaded from
--classifier_path (default: the cache path for the run's data; trained and cached on first use).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

flags.DEFINE_string("run_dir", None, "Training run folder (config.json + checkpoints/).")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix; empty = the newest in run_dir.")
flags.DEFINE_string("classifier_path", "", "Independent classifier (.keras); empty = default cache path.")
flags.DEFINE_integer("per_class", 128, "Samples per code value for the class-conditioned accuracy (paper: 128).")
flags.DEFINE_integer("fid_samples", 2000, "Real and generated images for the Frechet distance.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if not FLAGS.run_dir:
        print("error: --run_dir is required", file=sys.stderr)
        return 2
    import tensorflow as tf

    from tf_ssinfogan import evaluation, training
    from tf_ssinfogan.config import ConfigError
    from tf_ssinfogan.data import DataError, check_source_matches, load_source
    from tf_ssinfogan.fileio import write_text_atomic

    try:
        cfg, model = training.load_run(FLAGS.run_dir, FLAGS.checkpoint)
        source = load_source(cfg.data)
        check_source_matches(source, cfg.latent, cfg.network.image_shape)
        classifier, meta = evaluation.get_classifier(source, FLAGS.classifier_path)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = os.path.join(FLAGS.run_dir, "evaluation")
    result = evaluation.evaluate_model(model, source, classifier, meta, FLAGS.per_class, FLAGS.fid_samples,
                                       grids_dir=out_dir)
    path = os.path.join(out_dir, f"eval_{result['step']:06d}.json")
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    writer = tf.summary.create_file_writer(os.path.join(FLAGS.run_dir, "logs", "eval"))
    with writer.as_default(step=result["step"]):
        for tag, value in evaluation.scalars(result).items():
            tf.summary.scalar(tag, value)
    writer.flush()
    for tag, value in sorted(evaluation.scalars(result).items()):
        print(f"{tag}: {value:.4f}")
    print(f"classifier's own accuracy on the train split: {meta.get('validation_accuracy_on_train_split', float('nan')):.4f}")
    print(f"written: {path}")
    return 0


def run():
    """Console script `tf-ssinfogan-evaluate` (same flags as `python -m tf_ssinfogan.evaluate`)."""
    app.run(main)


if __name__ == "__main__":
    run()
