"""Train (or resume) an ss-InfoGAN / InfoGAN run.

  python -m tf_ssinfogan.train --flagfile=configs/mnist.flags
  python -m tf_ssinfogan.train --flagfile=configs/mnist.flags --run_dir=runs/x --labelled_fraction=0 --dry_run
  python -m tf_ssinfogan.train --flagfile=configs/cifar.flags      # also svhn.flags, celeba.flags
  python -m tf_ssinfogan.train --flagfile=configs/cifar.flags --source=image_folder --image_dir=my_images

Rerunning the same command resumes from the newest checkpoint in --run_dir. Flags live here only; they
become an `ExperimentConfig` for the library (`training.train`).
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags

from tf_ssinfogan.config import (PRECISIONS, ConfigError, DataConfig, ExperimentConfig, LatentConfig, NetworkConfig,
                                 TrainConfig, format_codes, parse_codes)

_D = ExperimentConfig()
FLAGS = flags.FLAGS

# run
flags.DEFINE_string("run_dir", _D.run_dir, "Run folder: config, checkpoints, logs, grids, export. Reused = resume.")
flags.DEFINE_bool("dry_run", False, "Print the resolved configuration as JSON and exit.")
flags.DEFINE_integer("cpu_devices", 0, "If > 1, split the CPU into this many logical devices (to try "
                     "--strategy=mirrored without GPUs).")
# latent codes
flags.DEFINE_integer("noise_dim", _D.latent.noise_dim, "Size of the incompressible noise z.")
flags.DEFINE_enum("noise_distribution", _D.latent.noise_distribution, ["normal", "uniform"], "Prior of z.")
flags.DEFINE_string("codes", format_codes(_D.latent.codes),
                    "Latent codes 'name:kind:dim[:label],...'; kind cat|cont|bin; a label column makes the code "
                    "semi-supervised.")
# network
flags.DEFINE_string("architecture", _D.network.architecture, "Network family (see networks.ARCHITECTURES).")
flags.DEFINE_list("image_shape", [str(v) for v in _D.network.image_shape], "Image height,width,channels.")
flags.DEFINE_bool("sync_batch_norm", _D.network.sync_batch_norm, "Synchronised BatchNormalization: batch "
                  "statistics over all replicas, so that N replicas train like one device.")
flags.DEFINE_float("leaky_relu_slope", _D.network.leaky_relu_slope, "LeakyReLU slope in D.")
flags.DEFINE_enum("output_activation", _D.network.output_activation, ["sigmoid", "tanh"],
                  "G output: sigmoid (data in [0,1]) or tanh (data in [-1,1]).")
# data
flags.DEFINE_enum("source", _D.data.source, ["npz", "tfds", "image_folder"], "Data source.")
flags.DEFINE_string("npz_path", _D.data.npz_path, "npz with x_train,y_train,x_test,y_test (label -1 = "
                    "unlabelled; extra columns y_train_<name>/y_test_<name>); empty = shipped MNIST.")
flags.DEFINE_string("image_dir", _D.data.image_dir, "Image folder root (with --source=image_folder): "
                    "labelled/<class>/*.png, unlabelled/*.png, optional test/<class>/*.png.")
flags.DEFINE_list("center_crop", [], "Centred crop height,width applied before resizing (tfds); empty = none.")
flags.DEFINE_bool("resize_images", False, "Resize the images to --image_shape's height and width at load time "
                  "(tfds, image_folder; area interpolation).")
flags.DEFINE_string("tfds_name", _D.data.tfds_name, "TFDS dataset name (with --source=tfds).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("train_split", _D.data.train_split, "TFDS training split (e.g. 'train+extra' for SVHN).")
flags.DEFINE_string("test_split", _D.data.test_split, "TFDS test split (final evaluation).")
flags.DEFINE_bool("download", True, "Let TFDS download the dataset if it is not in tfds_data_dir.")
flags.DEFINE_float("labelled_fraction", _D.data.labelled_fraction, "Fraction of training images labelled "
                   "(0 = plain InfoGAN).")
flags.DEFINE_integer("labelled_count", -1, "Number of labelled images (overrides the fraction when >= 0).")
flags.DEFINE_enum("labelled_selection", _D.data.labelled_selection, ["random", "balanced"],
                  "How the labelled subset is chosen.")
flags.DEFINE_integer("label_seed", _D.data.label_seed, "Seed of the labelled-subset choice.")
flags.DEFINE_float("anneal_start", _D.data.anneal_start, "P(labelled batch) at step 0.")
flags.DEFINE_float("anneal_decrement", _D.data.anneal_decrement, "P(labelled batch) decrement per period.")
flags.DEFINE_integer("anneal_every", _D.data.anneal_every, "Annealing period in steps.")
# training
flags.DEFINE_integer("batch_size", _D.train.batch_size, "Global batch size.")
flags.DEFINE_integer("steps", _D.train.steps, "Total training steps (generator updates).")
flags.DEFINE_integer("steps_per_epoch", _D.train.steps_per_epoch, "Steps per Keras epoch (progress bar, logs).")
flags.DEFINE_float("d_learning_rate", _D.train.d_learning_rate, "Adam learning rate of D and Q.")
flags.DEFINE_float("g_learning_rate", _D.train.g_learning_rate, "Adam learning rate of G.")
flags.DEFINE_float("beta_1", _D.train.beta_1, "Adam beta_1.")
flags.DEFINE_float("beta_2", _D.train.beta_2, "Adam beta_2.")
flags.DEFINE_float("ss_weight", _D.train.ss_weight, "lambda of the semi-supervised code terms.")
flags.DEFINE_float("q_ss_fake_weight", _D.train.q_ss_fake_weight, "Weight of Q_ss's loss on class-conditioned "
                   "fakes in the D/Q phase; 0 = reference (Q_ss learns from labelled real images only).")
flags.DEFINE_bool("reuse_fakes", _D.train.reuse_fakes, "The G phase reuses the D phase's latents and generator "
                  "forward pass (Torch DCGAN practice, about 8% fewer FLOPs); --noreuse_fakes draws fresh fakes.")
flags.DEFINE_bool("fused_adam", _D.train.fused_adam, "Adam through TF's fused kernel (the same update as Keras's "
                  "Adam, about 10% faster steps; reads Keras internals, falls back to Keras's Adam where they are "
                  "missing); off = keras.optimizers.Adam.")
flags.DEFINE_float("us_weight", _D.train.us_weight, "lambda of the unsupervised code terms.")
flags.DEFINE_integer("seed", _D.train.seed, "Seed of initialisation and latent sampling.")
flags.DEFINE_integer("shuffle_seed", _D.data.shuffle_seed, "Seed of the data order.")
flags.DEFINE_integer("checkpoint_every_epochs", _D.train.checkpoint_every_epochs, "Checkpoint period (epochs).")
flags.DEFINE_integer("max_checkpoints", _D.train.max_checkpoints, "Checkpoints kept.")
flags.DEFINE_integer("grid_every_epochs", _D.train.grid_every_epochs, "Image-grid period (epochs).")
flags.DEFINE_bool("export_at_end", _D.train.export_at_end, "Export the generator SavedModel at the end.")
flags.DEFINE_enum("strategy", _D.train.strategy, ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy; multi_worker reads the cluster from TF_CONFIG.")
flags.DEFINE_enum("loop", _D.train.loop, ["fit", "custom"], "Keras fit, or a custom loop over strategy.run "
                  "(the same train_step; always used with multi_worker).")
flags.DEFINE_bool("jit_compile", _D.train.jit_compile, "XLA-compile the train step.")
flags.DEFINE_enum("precision", _D.train.precision, list(PRECISIONS), "Keras dtype policy of the networks: "
                  "mixed_float16 (with dynamic loss scaling) or mixed_bfloat16 for GPUs and CPUs with fast 16-bit "
                  "units; losses, variables and exports stay float32.")
flags.DEFINE_integer("verbose", _D.train.verbose, "Keras fit verbosity (1 = progress bar).")
flags.DEFINE_enum("nan_policy", _D.train.nan_policy, ["stop", "skip"], "On a non-finite loss or gradient: "
                  "stop (naming the step and the term; the last checkpoint stays intact) or skip that update.")
flags.DEFINE_bool("deterministic", _D.train.deterministic, "Enable TF op determinism (slower on GPUs): "
                  "with the seeds, reruns and resumed runs give identical weights.")
flags.DEFINE_integer("eval_every_epochs", _D.train.eval_every_epochs, "Evaluate (independent classifier, "
                     "Frechet distance, information bounds) every N epochs into logs/eval; 0 = off.")
flags.DEFINE_bool("final_classifier_eval", _D.train.final_classifier_eval, "The final evaluation (eval.json) "
                  "adds the independent classifier's accuracy on class-conditioned samples (trains and caches the "
                  "classifier on first use).")
flags.DEFINE_string("classifier_path", _D.train.classifier_path, "Independent classifier (.keras); empty = the "
                    "default cache path (trained on first use, see tf_ssinfogan.train_classifier).")
flags.DEFINE_float("instance_noise_std", _D.train.instance_noise_std, "Initial std of the instance noise added "
                   "to every image D sees (0 = off).")
flags.DEFINE_enum("instance_noise_schedule", _D.train.instance_noise_schedule, ["linear", "exponential"],
                  "Instance-noise annealing: linear to 0 over --instance_noise_anneal_steps, or times "
                  "--instance_noise_decay per step.")
flags.DEFINE_integer("instance_noise_anneal_steps", _D.train.instance_noise_anneal_steps,
                     "Linear schedule: steps until the std reaches 0 (0 = constant std).")
flags.DEFINE_float("instance_noise_decay", _D.train.instance_noise_decay,
                   "Exponential schedule: factor applied to the std each step.")


def config_from_flags() -> ExperimentConfig:
    try:
        image_shape = tuple(int(v) for v in FLAGS.image_shape)
    except ValueError:
        raise ConfigError(f"image_shape must be three integers, got {FLAGS.image_shape}") from None
    try:
        center_crop = tuple(int(v) for v in FLAGS.center_crop)
    except ValueError:
        raise ConfigError(f"center_crop must be two integers, got {FLAGS.center_crop}") from None
    return ExperimentConfig(
        run_dir=FLAGS.run_dir,
        latent=LatentConfig(FLAGS.noise_dim, FLAGS.noise_distribution, parse_codes(FLAGS.codes)),
        network=NetworkConfig(FLAGS.architecture, image_shape, FLAGS.leaky_relu_slope,
                              output_activation=FLAGS.output_activation,
                              sync_batch_norm=FLAGS.sync_batch_norm),
        data=DataConfig(
            source=FLAGS.source, npz_path=FLAGS.npz_path, tfds_name=FLAGS.tfds_name,
            tfds_data_dir=FLAGS.tfds_data_dir, tfds_download=FLAGS.download, image_dir=FLAGS.image_dir,
            train_split=FLAGS.train_split, test_split=FLAGS.test_split,
            center_crop=center_crop, resize_to=tuple(image_shape[:2]) if FLAGS.resize_images else (),
            channels=image_shape[2] if FLAGS.source != "npz" and len(image_shape) == 3 else 0,
            labelled_fraction=FLAGS.labelled_fraction,
            labelled_count=FLAGS.labelled_count if FLAGS.labelled_count >= 0 else None,
            labelled_selection=FLAGS.labelled_selection, label_seed=FLAGS.label_seed,
            anneal_start=FLAGS.anneal_start, anneal_decrement=FLAGS.anneal_decrement,
            anneal_every=FLAGS.anneal_every, shuffle_seed=FLAGS.shuffle_seed),
        train=TrainConfig(
            batch_size=FLAGS.batch_size, steps=FLAGS.steps, steps_per_epoch=FLAGS.steps_per_epoch,
            d_learning_rate=FLAGS.d_learning_rate, g_learning_rate=FLAGS.g_learning_rate,
            beta_1=FLAGS.beta_1, beta_2=FLAGS.beta_2, ss_weight=FLAGS.ss_weight, us_weight=FLAGS.us_weight,
            q_ss_fake_weight=FLAGS.q_ss_fake_weight, reuse_fakes=FLAGS.reuse_fakes,
            fused_adam=FLAGS.fused_adam,
            seed=FLAGS.seed, checkpoint_every_epochs=FLAGS.checkpoint_every_epochs,
            max_checkpoints=FLAGS.max_checkpoints, grid_every_epochs=FLAGS.grid_every_epochs,
            export_at_end=FLAGS.export_at_end, strategy=FLAGS.strategy, loop=FLAGS.loop, jit_compile=FLAGS.jit_compile,
            precision=FLAGS.precision,
            verbose=FLAGS.verbose, eval_every_epochs=FLAGS.eval_every_epochs,
            final_classifier_eval=FLAGS.final_classifier_eval,
            deterministic=FLAGS.deterministic, nan_policy=FLAGS.nan_policy,
            classifier_path=FLAGS.classifier_path, instance_noise_std=FLAGS.instance_noise_std,
            instance_noise_schedule=FLAGS.instance_noise_schedule,
            instance_noise_anneal_steps=FLAGS.instance_noise_anneal_steps,
            instance_noise_decay=FLAGS.instance_noise_decay),
    ).validate()


def _module_flags_text() -> str:
    names = [f.name for f in FLAGS.get_flags_for_module(sys.modules[__name__])] or \
        [f.name for f in FLAGS.get_key_flags_for_module(sys.argv[0])]
    return "".join(f"{FLAGS[n].serialize()}\n" for n in sorted(set(names)) if n != "dry_run")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        cfg = config_from_flags()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if FLAGS.dry_run:
        print(cfg.to_json())
        return 0
    logging.getLogger("tf_ssinfogan").setLevel(logging.INFO)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if FLAGS.cpu_devices > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    from tf_ssinfogan import training
    from tf_ssinfogan.data import DataError
    from tf_ssinfogan.fileio import write_text_atomic

    try:
        os.makedirs(cfg.run_dir, exist_ok=True)
        training.check_resume_compatible(cfg.run_dir, cfg)
        write_text_atomic(os.path.join(cfg.run_dir, "flags.txt"), _module_flags_text())
        result = training.train(cfg)
    except (ConfigError, DataError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: step {result.step} in {result.seconds:.1f} s; run folder {result.run_dir}")
    if result.eval:
        print(f"eval: {result.eval}")
        for code, r in result.eval.get("class_conditioned", {}).items():
            direct = r["semi_supervised"] and r["accuracy"] == r["accuracy"]  # not NaN
            print(f"an independent classifier recognises the {'intended' if direct else 'best-matched'} class in "
                  f"{100 * r['accuracy' if direct else 'mapped_accuracy']:.1f}% of {r['samples']} samples "
                  f"conditioned on '{code}' ({os.path.join(result.run_dir, 'eval.json')})")
        if result.eval.get("samples_by_class"):
            print(f"samples, one row per class: {result.eval['samples_by_class']}")
    print(f"grids over training: {os.path.join(result.run_dir, 'grids')}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(result.run_dir, 'logs')}")
    if result.export_path:
        print(f"exported: {result.export_path} (model card: "
              f"{os.path.join(result.export_path, 'assets.extra', 'model_card.md')})")
    return 0


def run():
    """Console script `tf-ssinfogan-train` (same flags as `python -m tf_ssinfogan.train`)."""
    app.run(main)


if __name__ == "__main__":
    run()
