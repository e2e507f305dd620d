"""Train and cache the independent classifier used by the evaluation (the paper's protocol).

  python -m tf_ssinfogan.train_classifier                       # shipped MNIST, cached under ~/.cache
  python -m tf_ssinfogan.train_classifier --source=tfds --tfds_name=mnist --out=classifiers/mnist.keras

The classifier is trained on the *test* split and validated on the *train* split, so that it never saw the
images the GAN trained on; its validation accuracy is printed and stored beside it (.keras.json).
"""

from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_enum("source", "npz", ["npz", "tfds"], "Data source.")
flags.DEFINE_string("npz_path", "", "npz with x_train,y_train,x_test,y_test; empty = shipped MNIST.")
flags.DEFINE_string("tfds_name", "mnist", "TFDS dataset name (with --source=tfds).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_bool("download", True, "Let TFDS download the dataset.")
flags.DEFINE_string("label", "label", "Label column to classify.")
flags.DEFINE_integer("num_classes", 10, "Number of classes.")
flags.DEFINE_integer("epochs", 5, "Training epochs.")
flags.DEFINE_string("out", "", "Output .keras path; empty = the default cache path for this data.")
flags.DEFINE_bool("force", False, "Retrain even if the output exists.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    from tf_ssinfogan import evaluation
    from tf_ssinfogan.config import ConfigError, DataConfig
    from tf_ssinfogan.data import DataError, load_source

    try:
        cfg = DataConfig(source=FLAGS.source, npz_path=FLAGS.npz_path, tfds_name=FLAGS.tfds_name,
                         tfds_data_dir=FLAGS.tfds_data_dir, tfds_download=FLAGS.download)
        cfg.validate()
        source = load_source(cfg)
        if FLAGS.label not in source.test_labels:
            raise ConfigError(f"label {FLAGS.label!r} is not a column of {source.name!r} ({sorted(source.test_labels)})")
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not FLAGS.out.endswith(".keras") and FLAGS.out:
        print(f"error: --out must end in .keras, got {FLAGS.out!r}", file=sys.stderr)
        return 2
    path = FLAGS.out or evaluation.default_classifier_path(source, FLAGS.label)
    if FLAGS.force and __import__("os").path.exists(path):
        __import__("os").remove(path)
    _, meta = evaluation.get_classifier(source, path, FLAGS.label, FLAGS.num_classes, FLAGS.epochs)
    print(f"classifier: {path}")
    print(f"accuracy on the train split (never seen): {meta['validation_accuracy_on_train_split']:.4f}")
    return 0


def run():
    """Console script `tf-ssinfogan-train-classifier` (same flags as `python -m tf_ssinfogan.train_classifier`)."""
    app.run(main)


if __name__ == "__main__":
    run()
