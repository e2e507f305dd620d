"""Measures the training speed of a config on this machine: seconds per 100 steps at the config's batch size.

  python tools/time_config.py configs/cifar.flags [--steps=100] [--batch_size=N]

Uses random images and labels of the config's shapes (no download), the config's networks, codes, labelled
fraction and instance noise, and times `steps` steps after a 10-step warm-up (tracing excluded).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tf_ssinfogan import train as train_cli  # noqa: E402  (defines the flags)

flags.DEFINE_integer("timed_steps", 100, "Steps to time after the warm-up.")
FLAGS = flags.FLAGS


def synthetic_source(cfg, n=2048):
    from tf_ssinfogan.data.sources import ArraySource

    rng = np.random.RandomState(0)
    shape = tuple(cfg.network.image_shape)
    labels = {}
    for code in cfg.latent.semi_supervised_codes:
        if code.kind == "categorical":
            labels[code.label] = rng.randint(0, code.dim, n).astype(np.int64)
        elif code.kind == "binary":
            labels[code.label] = rng.randint(0, 2, n).astype(np.int64)
        else:
            labels[code.label] = rng.uniform(-1, 1, n).astype(np.float32)
    images = rng.randint(0, 256, (n,) + shape).astype(np.uint8)
    return ArraySource("synthetic", images, labels, images[:256], {k: v[:256] for k, v in labels.items()})


def main(argv):
    from tf_ssinfogan.data import stream as data_lib
    from tf_ssinfogan.rundir import checkpoints

    cfg = train_cli.config_from_flags()
    t = cfg.train
    source = synthetic_source(cfg)
    stream = data_lib.TrainStream(source, cfg.latent, cfg.data, t.batch_size, cfg.network.data_range)
    model = checkpoints.build_model(cfg, stream.labelled_ratio)
    warm, timed = 10, FLAGS.timed_steps
    model.fit(stream.dataset(0, warm), epochs=1, steps_per_epoch=warm, verbose=0)
    t0 = time.perf_counter()
    model.fit(stream.dataset(warm, warm + timed), epochs=1, steps_per_epoch=timed, verbose=0)
    sec = time.perf_counter() - t0
    print(f"{cfg.run_dir}: architecture {cfg.network.architecture}, batch {t.batch_size}: "
          f"{100 * sec / timed:.1f} s per 100 steps ({timed * t.batch_size / sec:.0f} images/s); "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    app.run(main)
