"""Train and cache the independent judges used by the evaluation (the paper's protocol).

  python -m tf_ssinfogan.train_classifier                       # shipped MNIST digit judge, cached under ~/.cache
  python -m tf_ssinfogan.train_classifier --run_dir=runs/celeba # every judge that run's evaluation needs
  python -m tf_ssinfogan.train_classifier --source=tfds --tfds_name=celeb_a --label=Smiling --kind=binary
  python -m tf_ssinfogan.train_classifier --source=tfds --tfds_name=mnist --out=classifiers/mnist.keras
  python -m tf_ssinfogan.train_classifier --source=image_folder --image_dir=my_images --image_shape=32,32,3
  python -m tf_ssinfogan.train_classifier --source=image_folder --image_dir=data/cifar10_jpeg --image_shape=32,32,3

A judge is trained on the *test* split and measured on the *train* split, so that it never saw the images the
GAN trained on; its held-out figure (accuracy, balanced accuracy or R^2 by kind) is printed and stored beside
it (.keras.json). For CIFAR-10-like data (a categorical code, 32x32 colour images with named classes, at least
20,000 labelled training images; e.g. data/cifar10_jpeg above) the judge is trained on the *train* split with
crops and flips and measured on the *test* split instead (evaluation/judges.py, recipe 'train_split'). One judge per
(dataset, label column, code kind); see tf_ssinfogan/evaluation/judges.py. The data flags are the train CLI's (the same
names, generated from `config.DataConfig`).
"""

from __future__ import annotations

import os
import sys

from absl import flags

from tf_ssinfogan import cli
from tf_ssinfogan.config import CODE_KINDS, JudgeConfig

# The fields that say where the data comes from (the labelled-subset and schedule fields do not apply here).
SOURCE_FIELDS = ("source", "npz_path", "image_dir", "tfds_name", "tfds_data_dir", "tfds_download", "train_split",
                 "test_split", "center_crop", "synthetic_seed", "synthetic_size", "synthetic_count")
flags.DEFINE_string("run_dir", "", "A training run: train every judge its evaluation needs (its data and codes); "
                    "the data flags are then ignored.")
cli.define_config_flags(sections=("data",), only=SOURCE_FIELDS, run_dir=False)
cli.define_config_flags(sections=("network",), only=("image_shape",), run_dir=False)
flags.DEFINE_string("label", "label", "Label column to judge.")
flags.DEFINE_enum("kind", "auto", ["auto", *CODE_KINDS], "What the judge predicts; "
                  "auto = from the column (integer classes, 0/1 attribute, float values).")
flags.DEFINE_integer("num_classes", 10, "Number of classes (categorical) or of values per image (binary, "
                     "continuous: 0 = the column's width).")
flags.DEFINE_enum("architecture", "auto", ["auto", "mnist_cnn", "resnet"], "auto = mnist_cnn for 28x28x1 "
                  "images, resnet otherwise.")
flags.DEFINE_integer("epochs", 0, "Training epochs; 0 = the architecture's default (mnist_cnn 5, resnet 10).")
flags.DEFINE_bool("augment", False, "Train on shifted (up to 2 pixels) and rotated (up to 10 degrees) copies: "
                  "a stronger judge from the same test split, cached apart from the default one.")
flags.DEFINE_string("out", "", "Output .keras path; empty = the default cache path for this data.")
flags.DEFINE_bool("force", False, "Retrain even if the output exists.")
flags.register_validator("out", lambda p: not p or p.endswith(".keras"), "--out must end in .keras")
FLAGS = flags.FLAGS


def _codes_from_flags(source):
    import numpy as np

    from tf_ssinfogan.config import CodeSpec

    cli.require(FLAGS.label in source.test_labels,
                f"label {FLAGS.label!r} is not a column of {source.name!r} ({sorted(source.test_labels)})")
    kind = FLAGS.kind if FLAGS.kind != "auto" else source.column(FLAGS.label).kind
    y = np.asarray(source.test_labels[FLAGS.label])
    dim = FLAGS.num_classes if kind == "categorical" else int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    return [CodeSpec(FLAGS.label, kind, dim, FLAGS.label)]


def main(argv):
    from tf_ssinfogan.evaluation import judges
    from tf_ssinfogan.rundir import paths
    from tf_ssinfogan.data.sources import check_source_matches, load_source

    judge_cfg = JudgeConfig(architecture=FLAGS.architecture, epochs=FLAGS.epochs, augment=FLAGS.augment)
    judge_cfg.validate()
    if FLAGS.run_dir:
        cfg = paths.read_config(FLAGS.run_dir)
        cli.require(cfg is not None, f"run_dir {FLAGS.run_dir!r} has no {paths.CONFIG} (not a training run folder)")
        source = load_source(cfg.data)
        check_source_matches(source, cfg.latent, cfg.network.image_shape)
        codes = [c for c in cfg.latent.codes if c.semi_supervised]
    else:
        data = cli.section_from_flags("data", only=SOURCE_FIELDS, **cli.derived_data_fields(FLAGS.image_shape))
        data.validate()
        source = load_source(data)
        codes = _codes_from_flags(source)
    cli.require(not (FLAGS.out and len(codes) != 1),
                f"--out names one file but {len(codes)} judges are needed; leave --out empty")
    status = 0
    done = set()
    for code in codes:
        key = (code.label, code.kind, code.dim)
        if key in done:
            continue
        done.add(key)
        arch = judges.choose_architecture(source.image_shape, FLAGS.architecture)
        path = FLAGS.out or judges.judge_path(source, code, arch, judge_cfg)
        if FLAGS.force and os.path.exists(path):
            os.remove(path)
        try:
            judge = judges.get_judge(source, code, judge_cfg, path)
        except judges.JudgeUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            status = cli.EXIT_BAD_INPUT
            continue
        h = judge.held_out
        print(f"judge for {code.label!r} ({code.kind}, {judge.meta.get('architecture')}): {path}")
        print(f"  {h.get('metric')} on the {judge.meta.get('held_out_split', 'train')} split (never seen): "
              f"{h.get('value', float('nan')):.4f}")
    return status


def run():
    """Console script `tf-ssinfogan-train-classifier` (same flags as `python -m tf_ssinfogan.train_classifier`)."""
    cli.run(main, section="judge")


if __name__ == "__main__":
    run()
