r"""Sample an image grid from an exported model: a SavedModel version folder or a generator .tflite file.

  python -m tf_ssinfogan.sample --model runs/mnist/export/ssinfogan/1 --code digit=3 --num 64 --out grid.png
  python -m tf_ssinfogan.sample --model runs/mnist/export/ssinfogan_tflite/1/generator_int8.tflite \
      --code digit=3 --code c1=0.5 --num 64 --out grid.png

`--code name=value` fixes a code for every sample (a class index for a categorical code, comma-separated
floats for a continuous or binary one); the other codes and the noise are drawn from their priors. With a
SavedModel `--seed` is the stateless seed of the `sample` signature; the TFLite `sample` signature uses
unseeded builtin random ops whose stream a fresh interpreter restarts, so there `--seed N` skips N draws
(each seed gives its own reproducible grid). The latent spec is read from `model_info.json` (in the SavedModel's
`assets.extra/`, or next to the .tflite file). Bad input: a message naming it on stderr, exit status 2, and
no output file.

`--traverse CODE --steps N` (SavedModel only) writes instead the grid of its `traverse` signature: CODE swept
across N columns, one row of other latents per sample (`--num` rows), drawn from `--seed`; the latent explorer's
grid mode (`tf_ssinfogan.explore`) shows the same grid.
"""

from __future__ import annotations

import json
import math
import os

from absl import flags

from tf_ssinfogan import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel version folder or generator .tflite file.")
flags.DEFINE_multi_string("code", [], "name=value: fix a code (repeatable), e.g. digit=3 or c1=0.5.")
flags.DEFINE_integer("num", 64, "Number of samples.")
flags.DEFINE_integer("seed", 0, "Seed: the stateless seed of a SavedModel; for a .tflite model, the number of "
                     "draws to skip in the interpreter's random stream (0 <= seed <= 1000).")
flags.DEFINE_integer("cols", 0, "Grid columns; 0 = ceil(sqrt(num)).")
flags.DEFINE_string("out", "samples.png", "Output PNG.")
flags.DEFINE_string("traverse", None, "Instead of samples, sweep this code (name, or name:d for dimension d of a "
                    "wider code) across --steps columns, --num rows of other latents (SavedModel only).")
flags.DEFINE_integer("steps", 10, "With --traverse: the number of values of the code (columns).")


def read_model_info(model: str) -> dict:
    """model_info.json of a SavedModel folder (assets.extra/) or next to a .tflite file."""
    folder = model if os.path.isdir(model) else os.path.dirname(os.path.abspath(model))
    for path in (os.path.join(folder, "assets.extra", "model_info.json"), os.path.join(folder, "model_info.json")):
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
    raise FileNotFoundError(f"no model_info.json for {model!r} (looked in assets.extra/ and next to the file)")


def latent_space_from_info(info: dict):
    from tf_ssinfogan.config import CodeSpec, LatentConfig
    from tf_ssinfogan.model.latents import LatentSpace

    codes = tuple(CodeSpec(c["name"], c["kind"], c["dim"], c.get("label")) for c in info["codes"])
    return LatentSpace(LatentConfig(info["noise_dim"], info["noise_distribution"], codes))


def parse_fixed(items, info: dict) -> dict:
    """['digit=3', 'c1=0.5'] -> {'digit': 3, 'c1': [0.5]} for the codes of `info` (model_info.json); raises
    ValueError naming the bad item (before any model is loaded: bad input fails fast)."""
    from tf_ssinfogan.config import CodeSpec
    from tf_ssinfogan.model.latents import kind_of

    codes = {c["name"]: CodeSpec(c["name"], c["kind"], c["dim"], c.get("label")) for c in info["codes"]}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--code {item!r}: expected name=value")
        if name not in codes:
            raise ValueError(f"--code {item!r}: unknown code {name!r}; the codes are {sorted(codes)}")
        code = codes[name]
        try:
            out[name] = kind_of(code).parse(code, value)
        except ValueError as e:
            raise ValueError(f"--code {item!r}: {e}") from None
    return out


def sample_images(model: str, num: int, fixed: dict, seed: int = 0):
    """uint8 images [num, H, W, C] from a SavedModel folder or a generator .tflite file.

    The TFLite `sample` signature has no seed input: its builtin random ops draw from a stream that a fresh
    interpreter restarts, so the same call gives the same images. `seed` advances that stream by `seed`
    draws first, which gives a different, reproducible grid per seed (with the same LiteRT version).
    """
    import numpy as np

    from tf_ssinfogan.serving import tflite
    from tf_ssinfogan.serving import saved_model

    space = latent_space_from_info(read_model_info(model))
    if os.path.isdir(model):
        import tensorflow as tf

        request = tflite.sample_request(space, num, fixed, seed=seed)
        fn = tf.saved_model.load(model).signatures[saved_model.SAMPLE]
        return fn(**{k: tf.constant(v) for k, v in request.items()})["images_uint8"].numpy()
    request = tflite.sample_request(space, num, fixed)
    interp = tflite.interpreter(model_path=model)
    for _ in range(seed):
        tflite.run_signature(interp, saved_model.SAMPLE, request)
    return np.asarray(tflite.run_signature(interp, saved_model.SAMPLE, request)["images_uint8"])


def traverse_grid(model: str, code: str, steps: int, rows: int, seed: int = 0):
    """uint8 [rows * H, steps * W, C]: the `traverse` signature's grid of a SavedModel folder."""
    import tensorflow as tf

    from tf_ssinfogan.serving import saved_model

    choices = [c[0] for c in saved_model.traverse_choices(latent_space_from_info(read_model_info(model)))]
    if code not in choices:
        raise ValueError(f"--traverse {code!r}: not a code of this model; expected one of {choices}")
    fn = tf.saved_model.load(model).signatures[saved_model.TRAVERSE]
    return fn(code=tf.constant(code), steps=tf.constant(steps), rows=tf.constant(rows),
              seed=tf.constant(seed))["grid_uint8"].numpy()


def write_grid(images, path: str, cols: int = 0) -> str:
    import numpy as np

    from tf_ssinfogan.evaluation import grids

    n = len(images)
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    pad = np.full((rows * cols - n,) + images.shape[1:], 255, np.uint8)
    return grids.write_png(path, grids.make_grid(np.concatenate([images, pad]), rows, cols))


flags.register_validator("num", lambda n: 1 <= n <= 4096, "--num must be in [1, 4096]")
flags.register_validator("cols", lambda n: n >= 0, "--cols must be >= 0")
flags.register_validator("out", lambda p: p.lower().endswith(".png"), "--out must be a .png file")


def main(argv):
    cli.require(bool(FLAGS.model) and os.path.exists(FLAGS.model),
                f"--model {FLAGS.model!r} does not exist (a SavedModel folder or a .tflite file)")
    cli.require(not os.path.isfile(FLAGS.model) or FLAGS.model.endswith(".tflite"),
                f"--model {FLAGS.model!r} is a file but not a .tflite model")
    cli.require(FLAGS.seed >= 0 and not (FLAGS.seed > 1000 and FLAGS.model.endswith(".tflite")),
                f"--seed must be >= 0 (<= 1000 for a .tflite model), got {FLAGS.seed}")
    if FLAGS.traverse is not None:
        cli.require(os.path.isdir(FLAGS.model), "--traverse needs a SavedModel folder (a .tflite generator has no "
                    "traverse signature)")
        cli.require(not FLAGS.code and not FLAGS.cols, "--traverse draws every other code per row: it takes no "
                    "--code and no --cols (the columns are --steps)")
        cli.require(2 <= FLAGS.steps <= 4096, f"--steps must be in [2, 4096], got {FLAGS.steps}")
    try:
        if FLAGS.traverse is not None:
            from tf_ssinfogan.evaluation import grids

            grid = traverse_grid(FLAGS.model, FLAGS.traverse, FLAGS.steps, FLAGS.num, FLAGS.seed)
            print(grids.write_png(FLAGS.out, grid))
            return 0
        fixed = parse_fixed(FLAGS.code, read_model_info(FLAGS.model))
        images = sample_images(FLAGS.model, FLAGS.num, fixed, FLAGS.seed)
    except (ValueError, KeyError) as e:
        raise cli.UsageError(str(e)) from None
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. InvalidArgumentError from the in-graph checks
        from tf_ssinfogan.serving.saved_model import error_message

        raise cli.UsageError(error_message(e)) from None
    print(write_grid(images, FLAGS.out, FLAGS.cols))
    return 0


def run():
    """Console script `tf-ssinfogan-sample` (same flags as `python -m tf_ssinfogan.sample`)."""
    cli.run(main, section="sampling")


if __name__ == "__main__":
    run()
