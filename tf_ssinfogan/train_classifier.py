"""Train and cache the independent judges used by the evaluation (the paper's protocol).

  python -m tf_ssinfogan.train_classifier                       # shipped MNIST digit judge, cached under ~/.cache
  python -m tf_ssinfogan.train_classifier --run_dir=runs/celeba # every judge that run's evaluation needs
  python -m tf_ssinfogan.train_classifier --source=tfds --tfds_name=celeb_a --label=Smiling --kind=binary
  python -m tf_ssinfogan.train_classifier --source=tfds --tfds_name=mnist --out=classifiers/mnist.keras

A judge is trained on the *test* split and measured on the *train* split, so that it never saw the images the
GAN trained on; its held-out figure (accuracy, balanced accuracy or R^2 by kind) is printed and stored beside
it (.keras.json). One judge per (dataset, label column, code kind); see tf_ssinfogan/judges.py.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

flags.DEFINE_string("run_dir", "", "A training run: train every judge its evaluation needs (its data and codes); "
                    "the data flags below are then ignored.")
flags.DEFINE_enum("source", "npz", ["npz", "tfds", "image_folder"], "Data source.")
flags.DEFINE_string("npz_path", "", "npz with x_train,y_train,x_test,y_test; empty = shipped MNIST.")
flags.DEFINE_string("image_dir", "", "Image folder root (with --source=image_folder).")
flags.DEFINE_string("tfds_name", "mnist", "TFDS dataset name (with --source=tfds).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_bool("download", True, "Let TFDS download the dataset.")
flags.DEFINE_string("label", "label", "Label column to judge.")
flags.DEFINE_enum("kind", "auto", ["auto", "categorical", "binary", "continuous"], "What the judge predicts; "
                  "auto = from the column (integer classes, 0/1 attribute, float values).")
flags.DEFINE_integer("num_classes", 10, "Number of classes (categorical) or of values per image (binary, "
                     "continuous: 0 = the column's width).")
flags.DEFINE_enum("architecture", "auto", ["auto", "mnist_cnn", "resnet"], "auto = mnist_cnn for 28x28x1 "
                  "images, resnet otherwise.")
flags.DEFINE_integer("epochs", 0, "Training epochs; 0 = the architecture's default (mnist_cnn 5, resnet 10).")
flags.DEFINE_string("out", "", "Output .keras path; empty = the default cache path for this data.")
flags.DEFINE_bool("force", False, "Retrain even if the output exists.")
FLAGS = flags.FLAGS


def _codes_from_flags(source):
    import numpy as np

    from tf_ssinfogan.config import CodeSpec, ConfigError

    if FLAGS.label not in source.test_labels:
        raise ConfigError(f"label {FLAGS.label!r} is not a column of {source.name!r} ({sorted(source.test_labels)})")
    kind = FLAGS.kind if FLAGS.kind != "auto" else source.column(FLAGS.label).kind
    y = np.asarray(source.test_labels[FLAGS.label])
    dim = FLAGS.num_classes if kind == "categorical" else int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    return [CodeSpec(FLAGS.label, kind, dim, FLAGS.label)]


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if FLAGS.out and not FLAGS.out.endswith(".keras"):
        print(f"error: --out must end in .keras, got {FLAGS.out!r}", file=sys.stderr)
        return 2
    from tf_ssinfogan import judges, training
    from tf_ssinfogan.config import ConfigError, DataConfig
    from tf_ssinfogan.data import DataError, check_source_matches, load_source

    try:
        judge_cfg = judges.JudgeConfig(architecture=FLAGS.architecture, epochs=FLAGS.epochs)
        judge_cfg.validate()
        if FLAGS.run_dir:
            cfg = training.read_run_config(FLAGS.run_dir)
            if cfg is None:
                raise ConfigError(f"run_dir {FLAGS.run_dir!r} has no config.json (not a training run folder)")
            source = load_source(cfg.data)
            check_source_matches(source, cfg.latent, cfg.network.image_shape)
            codes = [c for c in cfg.latent.codes if c.semi_supervised]
        else:
            cfg = DataConfig(source=FLAGS.source, npz_path=FLAGS.npz_path, tfds_name=FLAGS.tfds_name,
                             tfds_data_dir=FLAGS.tfds_data_dir, tfds_download=FLAGS.download, image_dir=FLAGS.image_dir)
            cfg.validate()
            source = load_source(cfg)
            codes = _codes_from_flags(source)
        if FLAGS.out and len(codes) != 1:
            raise ConfigError(f"--out names one file but {len(codes)} judges are needed; leave --out empty")
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    done = set()
    for code in codes:
        key = (code.label, code.kind, code.dim)
        if key in done:
            continue
        done.add(key)
        arch = judges.choose_architecture(source.image_shape, FLAGS.architecture)
        path = FLAGS.out or judges.judge_path(source, code, arch)
        if FLAGS.force and os.path.exists(path):
            os.remove(path)
        try:
            judge = judges.get_judge(source, code, judge_cfg, path)
        except judges.JudgeUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
            continue
        h = judge.held_out
        print(f"judge for {code.label!r} ({code.kind}, {judge.meta.get('architecture')}): {path}")
        print(f"  {h.get('metric')} on the train split (never seen): {h.get('value', float('nan')):.4f}")
    return status


if __name__ == "__main__":
    app.run(main)
