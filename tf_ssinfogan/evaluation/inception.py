"""InceptionV3 features for FID, KID and the Inception Score, and where its ImageNet weights come from.

The network is `keras.applications.InceptionV3` (Szegedy et al. 2016) with ImageNet weights: FID and KID use
its 2048-d global-average-pool features, the Inception Score its 1000-way softmax. Images are resized to
299x299 (bilinear, from uint8 values) and scaled to [-1, 1] (`inception_v3.preprocess_input`), as TF-GAN
prepares them; grey images are repeated to 3 channels. The network differs from the one TF-GAN, pytorch-fid
and clean-fid use (the 2015 TF Inception graph, 1008 logits), so absolute FIDs differ somewhat from theirs:
compare figures computed with the same network.

The weights are never downloaded here: they come from a file (`weights_path`) or the Keras cache
(`$KERAS_HOME/models/`, `~/.keras/models/` by default), where `keras.applications.InceptionV3(weights=
"imagenet")` leaves them on a machine with a network.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional

import numpy as np

NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
TOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
INPUT_SIZE = 299
POOL_DIM = 2048


class WeightsError(FileNotFoundError):
    """The InceptionV3 ImageNet weights are not available; the message says how to get them."""


def keras_cache_dirs():
    """Where `keras.utils.get_file` keeps downloaded models: $KERAS_HOME (or ~/.keras), else /tmp/.keras."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [os.path.join(home, "models"), os.path.join("/tmp", ".keras", "models")]


def has_classifier_head(path: str) -> bool:
    """Whether a Keras .h5 weights file holds InceptionV3's 'predictions' layer (the top variant)."""
    import h5py

    with h5py.File(path, "r") as f:
        names = f.attrs.get("layer_names")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else list(f)
    return "predictions" in names


def resolve_weights(weights_path: str = "", need_top: bool = False) -> str:
    """The weights file to use: `weights_path` if given, else the Keras cache (the top variant when `need_top`,
    i.e. for the Inception Score; FID/KID take either). Raises WeightsError saying how to get them."""
    if weights_path:
        if not os.path.isfile(weights_path):
            raise WeightsError(f"--inception_weights file {weights_path!r} does not exist")
        if need_top and not has_classifier_head(weights_path):
            raise WeightsError(f"the Inception Score needs InceptionV3's classification head, but "
                               f"{weights_path!r} has none (it is the 'notop' variant); use {TOP_FILE}")
        return weights_path
    names = [TOP_FILE] if need_top else [NOTOP_FILE, TOP_FILE]
    tried = [os.path.join(d, n) for d in keras_cache_dirs() for n in names]
    for path in tried:
        if os.path.isfile(path):
            return path
    include_top = "True" if need_top else "False"
    raise WeightsError(
        "InceptionV3 ImageNet weights are needed for FID/KID/IS but were not found (nothing is downloaded "
        f"here); looked in: {', '.join(tried)}. Get them once on a machine with a network: `python -c \"import "
        f"keras; keras.applications.InceptionV3(weights='imagenet', include_top={include_top})\"` (fills the "
        f"Keras cache, ~/.keras/models/), or download {URL}{names[0]} and pass --inception_weights=PATH.")


def build_inception(weights_path: Optional[str], include_top: bool, input_size: int = INPUT_SIZE):
    """InceptionV3 -> {'pool': [B, 2048], 'probs': [B, 1000] (with the head)}; weights_path None = random init
    (tests; 75 is the smallest input_size)."""
    import keras

    net = keras.applications.InceptionV3(weights=weights_path, include_top=include_top,
                                         pooling=None if include_top else "avg",
                                         input_shape=(input_size, input_size, 3))
    if include_top:
        outputs = {"pool": net.get_layer("avg_pool").output, "probs": net.output}
    else:
        outputs = {"pool": net.output}
    return keras.Model(net.inputs, outputs, name="inception_v3_features")


class InceptionExtractor:
    """Callable: uint8 images [N, H, W, C] -> {'pool': [N, F], 'probs': [N, K] when the model has a head}.

    `model` maps float images in [-1, 1] of `input_size` x `input_size` x 3 to a dict with 'pool' (and
    optionally 'probs'); tests pass a randomly initialised InceptionV3 at a small size.
    """

    def __init__(self, model, input_size: int = INPUT_SIZE, batch_size: int = 100):
        import tensorflow as tf

        self.model, self.input_size, self.batch_size = model, input_size, batch_size
        self._forward = tf.function(lambda x: model(self.preprocess(x), training=False), reduce_retracing=True)

    def preprocess(self, images_uint8):
        import tensorflow as tf

        x = tf.cast(images_uint8, tf.float32)
        if x.shape[-1] == 1:
            x = tf.image.grayscale_to_rgb(x)
        x = tf.image.resize(x, (self.input_size, self.input_size), method="bilinear")
        return x / 127.5 - 1.0  # keras.applications.inception_v3.preprocess_input

    def __call__(self, images_uint8) -> Dict[str, np.ndarray]:
        parts: Dict[str, list] = {}
        images_uint8 = np.asarray(images_uint8)
        if images_uint8.shape[-1] == 1:  # here, not in the traced function: a relaxed trace has no channel count
            images_uint8 = np.repeat(images_uint8, 3, axis=-1)
        for i in range(0, len(images_uint8), self.batch_size):
            out = self._forward(images_uint8[i:i + self.batch_size])
            for k, v in out.items():
                parts.setdefault(k, []).append(np.asarray(v, np.float32))
        return {k: np.concatenate(v) for k, v in parts.items()}


def imagenet_extractor(weights_path: str = "", need_top: bool = False,
                       batch_size: int = 100) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
    """The standard extractor: resolved ImageNet weights (WeightsError if absent), 299x299 input. A file with
    the head gives both pool features and class probabilities."""
    path = resolve_weights(weights_path, need_top)
    top = has_classifier_head(path)
    try:
        model = build_inception(path, include_top=top)
    except (ValueError, OSError) as e:
        raise WeightsError(f"{path!r} is not a Keras InceptionV3 weights file ({e})") from None
    return InceptionExtractor(model, INPUT_SIZE, batch_size)
