"""Export a training run for serving: a TF Serving-ready SavedModel, optionally TFLite/LiteRT models.

  python -m tf_ssinfogan.export --run_dir=runs/mnist
  python -m tf_ssinfogan.export --run_dir=runs/mnist --export_base=/models --tflite

Writes `<export_base>/<model_name>/<version>/` (SavedModel with the signatures serving_default, sample,
traverse, classify, classify_uint8; see `tf_ssinfogan.serving.saved_model`) with the next free version, and with --tflite
`<export_base>/<model_name>_tflite/<version>/` (generator_<q>.tflite, classifier_<q>.tflite and
tflite_report.json with sizes and max abs differences against the SavedModel; see `tf_ssinfogan.serving.tflite`).
Prints a JSON summary. Exits 2 with a message on bad input; nothing is left half-written. Flags live here
only; the library (`serving`, `tflite`) takes typed arguments.
"""

from __future__ import annotations

import json
import os

from absl import flags

from tf_ssinfogan import cli
from tf_ssinfogan.rundir import paths

FLAGS = flags.FLAGS
QUANTIZATIONS = ("float32", "float16", "int8")  # as tflite.QUANTIZATIONS (not imported: it loads TensorFlow)
flags.DEFINE_string("run_dir", None, "Training run folder (config.json + checkpoints/).")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to export; default: the newest in <run_dir>/checkpoints.")
flags.DEFINE_string("export_base", None, "Base folder of the export; default <run_dir>/export.")
flags.DEFINE_string("model_name", "ssinfogan", "Model name (the TF Serving model folder).")
flags.DEFINE_integer("version", 0, "Version number to write; 0 = the next free one. Never overwrites.")
flags.DEFINE_bool("tflite", False, "Also convert to TFLite (float32, float16, int8) and check parity.")
flags.DEFINE_list("quantizations", ["float32", "float16", "int8"], "TFLite quantisations (with --tflite).")


def _copy_card(saved_model: str, folder: str) -> None:
    """The SavedModel's model card and model_info.json (with class names) beside the .tflite files."""
    import shutil

    for name in ("model_card.md", "model_card.json", "model_info.json"):
        shutil.copyfile(os.path.join(saved_model, "assets.extra", name), os.path.join(folder, name))


flags.register_validator("version", lambda v: v >= 0, "--version must be >= 0")
flags.register_validator("model_name", lambda n: bool(n) and n.replace("_", "").replace("-", "").isalnum(),
                         "--model_name must be a plain name (letters, digits, _ or -)")


def main(argv):
    cli.require(bool(FLAGS.run_dir), "--run_dir is required")
    bad_q = [q for q in FLAGS.quantizations if q not in QUANTIZATIONS]
    cli.require(not (FLAGS.tflite and bad_q), f"--quantizations {bad_q} not in {list(QUANTIZATIONS)}")
    run = paths.RunDir(FLAGS.run_dir)
    cli.require(run.is_run(),  # checked before TensorFlow loads
                f"--run_dir {FLAGS.run_dir!r} has no {paths.CONFIG} (not a training run folder)")
    export_base = FLAGS.export_base or run.export_base
    version = FLAGS.version or None
    tflite_dir = os.path.join(export_base, f"{FLAGS.model_name}_tflite")
    if version is not None:
        for d in (os.path.join(export_base, FLAGS.model_name), tflite_dir if FLAGS.tflite else None):
            cli.require(not (d and os.path.exists(os.path.join(d, str(version)))),
                        f"version {os.path.join(d or '', str(version))!r} already exists; versions are never "
                        "overwritten")
    import tensorflow as tf

    from tf_ssinfogan.serving import tflite
    from tf_ssinfogan.serving import saved_model as serving

    try:
        model = serving.restore_run(FLAGS.run_dir, FLAGS.checkpoint)
    except (FileNotFoundError, ValueError, KeyError, TypeError, AssertionError, tf.errors.OpError) as e:
        raise cli.UsageError(f"cannot restore run {FLAGS.run_dir!r}: {e}") from None
    from tf_ssinfogan.serving import model_card

    card = model_card.card_data(paths.read_config(FLAGS.run_dir), int(model.step), FLAGS.run_dir)
    try:
        path = serving.export_saved_model(model, export_base, FLAGS.model_name, version, card=card)
    except (FileExistsError, ValueError, OSError) as e:
        raise cli.UsageError(str(e)) from None
    summary = {"saved_model": path, "signatures": list(serving.SIGNATURES), "step": int(model.step),
               "model_card": os.path.join(path, "assets.extra", "model_card.md")}
    if FLAGS.tflite:
        report = {}
        try:
            out = serving.write_versioned(
                tflite_dir,
                lambda tmp: (report.update(tflite.export_tflite(model, tmp, path, FLAGS.quantizations)),
                             _copy_card(path, tmp)),
                int(os.path.basename(path)))
        except (FileExistsError, ValueError, OSError, AssertionError) as e:
            raise cli.UsageError(f"TFLite export failed (the SavedModel {path} is complete): {e}") from None
        summary["tflite"] = out
        summary["tflite_report"] = report
    print(json.dumps(summary, indent=2))
    return 0


def run():
    """Console script `tf-ssinfogan-export` (same flags as `python -m tf_ssinfogan.export`)."""
    cli.run(main, section="export")


if __name__ == "__main__":
    run()
