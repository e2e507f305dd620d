"""Train and cache the independent classifier used by the evaluation (the paper's protocol).

  python -m tf_ssinfogan.train_classifier                       # shipped MNIST, cached under ~/.cache
  python -m tf_ssinfogan.train_classifier --source=tfds --tfds_name=mnist --out=classifiers/mnist.keras
  python -m tf_ssinfogan.train_classifier --source=image_folder --image_dir=my_images --image_shape=32,32,3

The classifier is trained on the *test* split and validated on the *train* split, so that it never saw the
images the GAN trained on; its validation accuracy is printed and stored beside it (.keras.json). The data
flags are the train CLI's (the same names, generated from `config.DataConfig`).
"""

from __future__ import annotations

import os

from absl import flags

from tf_ssinfogan import cli

# The fields that say where the data comes from (the labelled-subset and schedule fields do not apply here).
SOURCE_FIELDS = ("source", "npz_path", "image_dir", "tfds_name", "tfds_data_dir", "tfds_download", "train_split",
                 "test_split", "center_crop")
cli.define_config_flags(sections=("data",), only=SOURCE_FIELDS, run_dir=False)
cli.define_config_flags(sections=("network",), only=("image_shape",), run_dir=False)
flags.DEFINE_string("label", "label", "Label column to classify.")
flags.DEFINE_integer("num_classes", 10, "Number of classes.")
flags.DEFINE_integer("epochs", 5, "Training epochs.")
flags.DEFINE_string("out", "", "Output .keras path; empty = the default cache path for this data.")
flags.DEFINE_bool("force", False, "Retrain even if the output exists.")
flags.register_validator("out", lambda p: not p or p.endswith(".keras"), "--out must end in .keras")
FLAGS = flags.FLAGS


def main(argv):
    from tf_ssinfogan import evaluation
    from tf_ssinfogan.sources import load_source

    shape = tuple(int(v) for v in FLAGS.image_shape)
    cfg = cli.section_from_flags(
        "data", only=SOURCE_FIELDS, resize_to=shape[:2] if FLAGS.resize_images else (),
        channels=shape[2] if FLAGS.source != "npz" else 0)
    cfg.validate()
    source = load_source(cfg)
    cli.require(FLAGS.label in source.test_labels,
                f"label {FLAGS.label!r} is not a column of {source.name!r} ({sorted(source.test_labels)})")
    path = FLAGS.out or evaluation.default_classifier_path(source, FLAGS.label)
    if FLAGS.force and os.path.exists(path):
        os.remove(path)
    _, meta = evaluation.get_classifier(source, path, FLAGS.label, FLAGS.num_classes, FLAGS.epochs)
    print(f"classifier: {path}")
    print(f"accuracy on the train split (never seen): {meta['validation_accuracy_on_train_split']:.4f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
