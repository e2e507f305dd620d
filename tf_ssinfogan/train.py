"""Train (or resume) an ss-InfoGAN / InfoGAN run.

  python -m tf_ssinfogan.train --flagfile=configs/mnist.flags
  python -m tf_ssinfogan.train --flagfile=configs/mnist.flags --run_dir=runs/x --labelled_fraction=0 --dry_run
  python -m tf_ssinfogan.train --flagfile=configs/cifar.flags      # also svhn.flags, celeba.flags
  python -m tf_ssinfogan.train --flagfile=configs/cifar.flags --source=image_folder --image_dir=my_images

Rerunning the same command resumes from the newest readable checkpoint in --run_dir. SIGTERM or SIGINT
checkpoint the current step and exit with status 75 (rerun to resume); a file that cannot be written (full
disk, read-only folder) exits with status 74, naming the path. Every field of the configuration
is a flag of the same name (generated from `config.py` by `cli.py`); the library gets an `ExperimentConfig`
(`training.train`). Bad input: a message and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import flags

from tf_ssinfogan import cli
from tf_ssinfogan.config import ExperimentConfig

FLAGS = flags.FLAGS

cli.define_config_flags()
flags.DEFINE_bool("dry_run", False, "Print the resolved configuration as JSON and exit.")
flags.DEFINE_integer("cpu_devices", 0, "If > 1, split the CPU into this many logical devices (to try "
                     "--strategy=mirrored without GPUs).")


def config_from_flags() -> ExperimentConfig:
    return cli.config_from_flags(FLAGS)


def _module_flags_text() -> str:
    names = [f.name for f in FLAGS.get_flags_for_module(sys.modules[__name__])] or \
        [f.name for f in FLAGS.get_key_flags_for_module(sys.argv[0])]
    names += [f.name for f in FLAGS.get_flags_for_module(cli)]
    return "".join(f"{FLAGS[n].serialize()}\n" for n in sorted(set(names)) if n != "dry_run")


def main(argv):
    cfg = config_from_flags()
    if FLAGS.dry_run:
        print(cfg.to_json())
        return 0
    logging.getLogger("tf_ssinfogan").setLevel(logging.INFO)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if FLAGS.cpu_devices > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    from tf_ssinfogan.rundir import checkpoints, paths
    from tf_ssinfogan.training import preemption, trainer
    from tf_ssinfogan.rundir.fileio import WriteError

    try:
        result = trainer.train(cfg, flags_text=_module_flags_text())
    except checkpoints.CheckpointError as e:  # no checkpoint can be read: nothing was deleted
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    except preemption.Preempted as e:  # a checkpoint of the current step was written
        print(f"preempted: {e}", file=sys.stderr)
        return cli.EXIT_PREEMPTED
    except WriteError as e:  # full disk, unwritable run folder: names the path
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_WRITE_FAILED
    print(f"done: step {result.step} in {result.seconds:.1f} s; run folder {result.run_dir}")
    run = paths.RunDir(result.run_dir)
    if result.eval:
        print(f"eval: {result.eval}")
        for code, r in result.eval.get("class_conditioned", {}).items():
            direct = r["semi_supervised"] and r["accuracy"] == r["accuracy"]  # not NaN
            print(f"an independent classifier recognises the {'intended' if direct else 'best-matched'} class in "
                  f"{100 * r['accuracy' if direct else 'mapped_accuracy']:.1f}% of {r['samples']} samples "
                  f"conditioned on '{code}' ({run.eval_json})")
        if result.eval.get("samples_by_class"):
            print(f"samples, one row per class: {result.eval['samples_by_class']}")
    print(f"grids over training: {run.grids}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(result.run_dir, paths.LOGS)}")
    if result.export_path:
        print(f"exported: {result.export_path} (model card: "
              f"{os.path.join(result.export_path, 'assets.extra', 'model_card.md')})")
    return 0


def run():
    """Console script `tf-ssinfogan-train` (same flags as `python -m tf_ssinfogan.train`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
