"""Data sources: images and label columns in memory, and their checks against the latent code spec.

Loaders for an npz file (the MNIST shipped with the package by default), a TFDS dataset by name and an image
folder all return an `ArraySource`: uint8 NHWC train and test images plus flat label columns
(`{column: [N] or [N, d]}`; -1, or NaN for continuous columns, marks an unknown label). `check_source_matches`
refuses a code spec or network shape that does not fit the data, naming both sides. The step-indexed training
stream built from a source lives in `data/stream.py`.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tf_ssinfogan.config import ConfigError, DataConfig, LatentConfig
from tf_ssinfogan.data import synthetic
from tf_ssinfogan.model.latents import kind_of

DEFAULT_NPZ = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data_files", "mnist.npz")


class DataError(ValueError):
    """The data does not match what the run needs; the message names the file, key or value."""


LABEL_KINDS = ("categorical", "binary", "continuous")


@dataclasses.dataclass(frozen=True)
class LabelColumn:
    """What a label column holds: 'categorical' (ints 0..num_classes-1), 'binary' (0/1) or 'continuous'
    (floats). Unknown values: -1 for categorical and binary columns, NaN for continuous ones."""

    kind: str
    num_classes: Optional[int] = None  # categorical: the declared class count (None = unknown)
    class_names: Tuple[str, ...] = ()


@dataclasses.dataclass
class ArraySource:
    """In-memory images (uint8 NHWC) and label columns for the train and test splits.

    `label_columns` declares what a column holds (e.g. TFDS ClassLabel counts, CelebA booleans); columns not
    declared there are described by `column` from their values.
    """

    name: str
    train_images: np.ndarray
    train_labels: Dict[str, np.ndarray]
    test_images: np.ndarray
    test_labels: Dict[str, np.ndarray]
    label_columns: Dict[str, LabelColumn] = dataclasses.field(default_factory=dict)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def column(self, name: str) -> LabelColumn:
        """The declared or inferred description of train label column `name`."""
        if name in self.label_columns:
            return self.label_columns[name]
        return infer_column(self.train_labels[name])


def infer_column(y: np.ndarray) -> LabelColumn:
    """Describes an undeclared label column from its dtype: bool is binary, float continuous, int categorical
    (class count unknown; a binary code may still use it when its values are only -1, 0 and 1)."""
    y = np.asarray(y)
    if y.dtype == np.bool_:
        return LabelColumn("binary")
    if np.issubdtype(y.dtype, np.floating):
        return LabelColumn("continuous")
    return LabelColumn("categorical")


def known_rows(labels, kind: str) -> np.ndarray:
    """True per example whose label is known: -1 marks an unknown class or attribute, NaN an unknown value
    (continuous). Multi-dim columns need every entry known."""
    y = np.asarray(labels)
    ok = np.isfinite(y.astype(np.float64)) if kind == "continuous" else y >= 0
    return ok.reshape(len(y), -1).all(axis=1)


def _as_nhwc_uint8(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must have shape [N, H, W] or [N, H, W, C], got {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no images")
    if x.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 in [0, 255], got dtype {x.dtype}")
    return x


def _check_label_values(y: np.ndarray, where: str) -> None:
    if np.issubdtype(y.dtype, np.integer) and y.size and y.min() < -1:
        bad = int(np.flatnonzero(y.reshape(len(y), -1).min(axis=1) < -1)[0])
        raise DataError(f"{where}: label {int(y.reshape(len(y), -1)[bad].min())} at index {bad} is out of range "
                        "(labels are >= 0, or -1 for an unlabelled image)")


def load_npz(path: str) -> ArraySource:
    """Loads x_train, y_train, x_test, y_test (uint8 images, integer labels) from an .npz file.

    A label of -1 marks an unlabelled image (a partly labelled dataset). Further label columns may come as
    `y_train_<name>` / `y_test_<name>` pairs ([N] or [N, d]; bool, or integer 0/1 with -1 unknown, for
    binary codes; float with NaN unknown for continuous codes); they are columns `<name>`. Never unpickles
    (allow_pickle=False). Raises DataError naming the file and the problem.
    """
    path = path or DEFAULT_NPZ
    if not os.path.isfile(path):
        raise DataError(f"npz file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise DataError(f"npz file {path!r} lacks the arrays {missing} (has {sorted(f.files)})")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            extra = sorted(k[len("y_train_"):] for k in f.files if k.startswith("y_train_"))
            for col in extra:
                if f"y_test_{col}" not in f.files:
                    raise DataError(f"npz file {path!r} has y_train_{col} but lacks y_test_{col}")
                arrays[f"y_train_{col}"], arrays[f"y_test_{col}"] = f[f"y_train_{col}"], f[f"y_test_{col}"]
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"npz file {path!r} is corrupt or not an npz archive: {e}") from None
    splits, declared = {}, {}
    for split in ("train", "test"):
        x = _as_nhwc_uint8(arrays[f"x_{split}"], f"{path}:x_{split}")
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"{path}:y_{split} must be a vector with one label per image ({x.shape[0]}), got shape {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}:y_{split} must hold integer labels, got dtype {y.dtype}")
        _check_label_values(y, f"{path}:y_{split}")
        labels = {"label": y.astype(np.int64)}
        for col in extra:
            v = arrays[f"y_{split}_{col}"]
            if v.shape[:1] != (x.shape[0],) or v.ndim > 2:
                raise DataError(f"{path}:y_{split}_{col} must have shape [{x.shape[0]}] or [{x.shape[0]}, d], "
                                f"got {v.shape}")
            if np.issubdtype(v.dtype, np.bool_):
                v = v.astype(np.int64)
                declared[col] = LabelColumn("binary")
            elif np.issubdtype(v.dtype, np.integer):
                _check_label_values(v, f"{path}:y_{split}_{col}")
                v = v.astype(np.int64)
            elif np.issubdtype(v.dtype, np.floating):
                v = v.astype(np.float32)
            else:
                raise DataError(f"{path}:y_{split}_{col} must hold integers or floats, got dtype {v.dtype}")
            labels[col] = v
        splits[split] = (x, labels)
    return ArraySource(os.path.basename(path), splits["train"][0], splits["train"][1],
                       splits["test"][0], splits["test"][1], declared)


def preprocess_images(images, center_crop=(), resize_to=(), channels: int = 0):
    """uint8 [B, H, W, C] -> uint8 after an optional centred crop, area-resize and channel conversion."""
    x = tf.convert_to_tensor(images)
    if center_crop:
        ch, cw = center_crop
        h, w = int(x.shape[1]), int(x.shape[2])
        if ch > h or cw > w:
            raise DataError(f"center_crop {tuple(center_crop)} is larger than the images ({h}x{w})")
        x = x[:, (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw, :]
    if resize_to and tuple(x.shape[1:3]) != tuple(resize_to):
        x = tf.image.resize(tf.cast(x, tf.float32), resize_to, method="area", antialias=True)
        x = tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)
    if channels and int(x.shape[-1]) != channels:
        if channels == 1 and int(x.shape[-1]) == 3:
            x = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(x, tf.float32))), tf.uint8)
        elif channels == 3 and int(x.shape[-1]) == 1:
            x = tf.image.grayscale_to_rgb(x)
        else:
            raise DataError(f"cannot convert images with {int(x.shape[-1])} channels to {channels}")
    return tf.cast(x, tf.uint8)


def _flat_columns(feats: dict, prefix: str = "") -> Dict[str, np.ndarray]:
    """Scalar integer / boolean features, nested dicts flattened (CelebA 'attributes' -> 'Smiling', ...)."""
    out = {}
    for k, v in feats.items():
        if k == "image":
            continue
        if isinstance(v, dict):
            for kk, vv in _flat_columns(v, f"{k}/").items():
                out[kk] = vv
            continue
        v = np.asarray(v)
        if v.ndim == 1 and (v.dtype == np.bool_ or np.issubdtype(v.dtype, np.integer)):
            out[prefix + k] = v
    return out


def _short_names(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """'attributes/Smiling' -> 'Smiling' where the short name is unique (the long name always works too)."""
    out = dict(columns)
    short = {}
    for k in columns:
        short.setdefault(k.rsplit("/", 1)[-1], []).append(k)
    for s, ks in short.items():
        if len(ks) == 1 and s not in out:
            out[s] = columns[ks[0]]
    return out


NETWORK_TIMEOUT = 2.5  # seconds the offline check waits for a connection (name lookup included)


def network_problem(hosts, timeout: float = NETWORK_TIMEOUT) -> Optional[str]:
    """None when a TCP connection to one of `hosts` ((host, port) pairs) opens within `timeout` seconds, else
    why none did. With HTTPS_PROXY / ALL_PROXY set, the proxy is tried instead. The name lookup runs in a thread,
    so a resolver that never answers cannot hold the caller longer than `timeout`."""
    import socket
    import threading
    from urllib.parse import urlparse

    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), "")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else "http://" + proxy)
        hosts = [(parsed.hostname, parsed.port or 80)]
    result = {}

    def connect():
        errors = []
        for host, port in hosts:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result["ok"] = True
                return
            except OSError as e:
                errors.append(f"{host}:{port} ({e})")
        result["errors"] = errors

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if result.get("ok"):
        return None
    if "errors" in result:
        return "; ".join(result["errors"])
    return f"{', '.join(f'{h}:{p}' for h, p in hosts)} (no answer within {timeout:g} s)"


def _tfds_download_mocked(tfds) -> bool:
    """True under `tfds.testing.mock_data` (its download_and_prepare does nothing: no network is needed)."""
    method = getattr(tfds.core.DatasetBuilder, "download_and_prepare", None)
    return getattr(method, "__module__", "").startswith("tensorflow_datasets.testing")


def tfds_unavailable(builder, download: bool, probe=network_problem) -> Optional[str]:
    """Why a TFDS data set that is not prepared cannot be prepared now (None when it can): `download` is off, or
    the archive is neither in TFDS's manual folder nor in its download cache and its host does not answer
    (`probe(hosts)`). The message names the two ways on: a manual copy of the archive, or a class-folder tree."""
    import json
    from urllib.parse import urlparse

    root = str(builder.data_dir_root)
    downloads = os.path.join(root, "downloads")
    manual = os.path.join(downloads, "manual")
    try:
        urls = dict(builder.url_infos or {})
    except Exception:  # a builder without registered checksums
        urls = {}
    cached = set()
    for info in (os.listdir(downloads) if os.path.isdir(downloads) else []):
        if info.endswith(".INFO"):
            try:
                with open(os.path.join(downloads, info)) as f:
                    cached.update(json.load(f).get("urls", []))
            except (OSError, ValueError):
                pass
    missing = {u: i for u, i in urls.items() if u not in cached and not (
        getattr(i, "filename", None) and os.path.isfile(os.path.join(manual, i.filename)))}
    if download and urls and not missing:
        return None  # TFDS prepares it from the manual copy or the download cache
    name = builder.name
    rerun = "rerun the same command" if download else "rerun without --nodownload"
    if download:
        hosts = sorted({(urlparse(u).hostname, urlparse(u).port or (80 if u.startswith("http:") else 443))
                        for u in (missing or urls)}) or [("storage.googleapis.com", 443)]
        problem = probe(hosts)
        if problem is None:
            return None
        why = f"cannot be downloaded: no connection to {problem}"
    else:
        why = "--nodownload forbids downloading it"
    archives = ", ".join(f"{getattr(i, 'filename', None) or os.path.basename(urlparse(u).path)} ({u})"
                         for u, i in sorted((missing or urls).items())) or "the files its download step fetches"
    example = (" (for CIFAR-10, the JPEG copy in this layout: --flagfile=configs/cifar_folder.flags "
               "--image_dir=ROOT; README, 'More datasets and your own')") if name == "cifar10" else ""
    return (f"TFDS dataset {name!r} is not prepared in {root} and {why}. Two ways on:\n"
            f"  1. put a copy of {archives} into {manual}{os.sep} and {rerun}: TFDS prepares the "
            f"data from it (--tfds_data_dir chooses the folder that holds downloads/manual/);\n"
            f"  2. train on a local folder of class sub-folders, ROOT/train/<class>/*.jpg (or .png) and "
            f"ROOT/test/<class>/*.jpg: add --source=image_folder --image_dir=ROOT to the same command{example}.")


def load_tfds(name: str, data_dir: Optional[str] = None, download: bool = True,
              train_split: str = "train", test_split: str = "test", center_crop=(), resize_to=(),
              channels: int = 0, batch_size: int = 1024) -> ArraySource:
    """Loads a TFDS image dataset into memory, with flat label columns.

    Label columns: every scalar integer or boolean feature; nested feature dicts are flattened, so CelebA's
    `attributes['Smiling']` is column 'Smiling' (also 'attributes/Smiling'), a 0/1 int64 column. ClassLabel
    features declare their class count. Images are cropped / resized / converted batch by batch (`batch_size`
    at a time) into one preallocated uint8 array when the split size is known (else the batches are
    concatenated): peak memory is about the final array (N*H*W*C bytes; CelebA's 162,770 train images at
    32x32x3: 0.5 GB) plus one batch of full-size images.
    """
    import tensorflow_datasets as tfds  # heavy; only for this source

    if not _tfds_download_mocked(tfds):  # fail within seconds, naming the ways on, where TFDS would retry for minutes
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as e:  # e.g. an unknown name
            raise DataError(f"TFDS dataset {name!r} could not be loaded: {e}") from e
        from absl import logging as absl_logging

        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS warns that an absent folder has no dataset_info.json
        try:
            prepared = builder.is_prepared()
        finally:
            absl_logging.set_verbosity(verbosity)
        if not prepared:
            problem = tfds_unavailable(builder, download)
            if problem:
                raise DataError(problem)
    out = {}
    declared: Dict[str, LabelColumn] = {}
    for split in (train_split, test_split):
        try:
            ds, info = tfds.load(name, split=split, data_dir=data_dir, download=download, with_info=True)
        except Exception as e:  # TFDS raises many types; re-raise with the dataset named
            raise DataError(f"TFDS dataset {name!r} split {split!r} could not be loaded: {e}") from e
        if "image" not in info.features:
            raise DataError(f"TFDS dataset {name!r} has no 'image' feature (has {sorted(info.features)})")
        try:
            total = int(info.splits[split].num_examples)
        except Exception:  # unknown (e.g. under tfds.testing.mock_data), or a split expression TFDS can't size
            total = None
        images, filled, chunks, columns, n = None, 0, [], {}, 0
        for feats in tfds.as_numpy(ds.batch(batch_size)):
            x = preprocess_images(_as_nhwc_uint8(np.asarray(feats["image"]), f"tfds:{name}:{split}"),
                                  center_crop, resize_to, channels).numpy()
            if total is not None and images is None:
                images = np.empty((total,) + x.shape[1:], np.uint8)
            if images is not None and not chunks and filled + len(x) <= len(images):
                images[filled:filled + len(x)] = x
                filled += len(x)
            else:  # split size unknown (or wrong): collect the batches
                chunks.append(x)
            n += len(x)
            for k, v in _flat_columns(feats).items():
                columns.setdefault(k, []).append(v)
        if n == 0:
            raise DataError(f"TFDS dataset {name!r} split {split!r} is empty")
        parts = ([images[:filled]] if filled else []) + chunks
        images = parts[0] if len(parts) == 1 else np.concatenate(parts)
        labels = {k: np.concatenate(v).astype(np.int64) for k, v in columns.items()}
        out[split] = (images, _short_names(labels))
        for k, v in columns.items():
            feat = info.features
            for part in k.split("/"):
                feat = feat[part] if hasattr(feat, "keys") and part in feat.keys() else None
                if feat is None:
                    break
            kind = None
            if isinstance(feat, tfds.features.ClassLabel):
                kind = LabelColumn("categorical", int(feat.num_classes), tuple(feat.names))
            elif v[0].dtype == np.bool_:
                kind = LabelColumn("binary")
            if kind is not None:
                declared[k] = kind
                declared.setdefault(k.rsplit("/", 1)[-1], kind)
    return ArraySource(name, out[train_split][0], out[train_split][1], out[test_split][0], out[test_split][1],
                       declared)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _list_images(folder: str):
    return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs
                  if f.lower().endswith(IMAGE_EXTENSIONS))


def _check_image_files(paths, size=None, same_size: bool = True):
    """Reads each file's header (PIL) to name a corrupt or differently sized image before loading.

    With `same_size`, every image must be `size` (height, width), or, when None, the size of the first one.
    Returns that size.
    """
    from PIL import Image, UnidentifiedImageError

    first = None
    for p in paths:
        try:
            with Image.open(p) as im:
                got = (im.height, im.width)
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"image {p!r} is corrupt or not an image: {e}") from None
        if not same_size:
            continue
        if size is None:
            size, first = got, p
        elif got != tuple(size):
            where = f"{first!r} is" if first else "the run needs"
            raise DataError(f"image {p!r} is {got[0]}x{got[1]} but {where} {size[0]}x{size[1]}: all images must "
                            "have one size (or set resize_to, --resize_images)")
    return size


def _folder_split(folder: str, labelled: bool, size, channels: int, resize: bool, batch_size: int):
    """One folder through `keras.utils.image_dataset_from_directory`: uint8 images, labels, class names, files.

    `size` None: every image must have the size of the first; `resize`: all are area-resized to `size`.
    """
    import keras

    paths = _list_images(folder)
    if not paths:
        raise DataError(f"image folder {folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    color = {1: "grayscale", 3: "rgb"}[channels]
    # numeric class folders ('0'..'9') keep their number as the label; others are numbered alphabetically
    class_names = list(_class_folders(folder)[0]) if labelled else None
    size = _check_image_files(paths, size, same_size=not resize)
    ds = keras.utils.image_dataset_from_directory(
        folder, labels="inferred" if labelled else None, label_mode="int" if labelled else None,
        class_names=class_names, color_mode=color, batch_size=batch_size, image_size=tuple(size),
        shuffle=False, interpolation="area", verbose=False)
    files = list(ds.file_paths)
    images, labels, n = [], [], 0
    it = iter(ds)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            break
        except tf.errors.OpError as e:  # name the file that failed to decode
            for p in files[n:n + batch_size]:
                try:
                    tf.io.decode_image(tf.io.read_file(p), expand_animations=False)
                except tf.errors.OpError:
                    raise DataError(f"image {p!r} could not be decoded: {e.message.splitlines()[0]}") from None
            raise DataError(f"images in {folder!r} could not be loaded: {e.message.splitlines()[0]}") from None
        x, y = (batch if labelled else (batch, None))
        images.append(np.round(np.clip(x.numpy(), 0, 255)).astype(np.uint8))
        if labelled:
            labels.append(y.numpy().astype(np.int64))
        n += len(images[-1])
    images = np.concatenate(images)
    if labelled:
        names = class_names
        labels = np.concatenate(labels)
        if all(d.isdigit() for d in names):  # label = the folder's number
            labels = np.asarray([int(names[i]) for i in labels], np.int64)
        return images, labels, tuple(names), files
    return images, np.full([len(images)], -1, np.int64), (), files


def _class_folders(folder: str):
    """(class names, {class name: sorted image files}) of a folder of class sub-folders. Folders named 0, 1, ...
    keep their number as the label (the names are sorted numerically); other names are sorted alphabetically and
    numbered in that order. Raises DataError for a stray image, an empty class folder or no class folder."""
    if not os.path.isdir(folder):
        raise DataError(f"image folder {folder!r} does not exist")
    entries = sorted(os.listdir(folder))
    stray = [e for e in entries if e.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, e))]
    if stray:
        raise DataError(f"image {os.path.join(folder, stray[0])!r} lies directly in {folder!r}: images go in "
                        f"{folder}/<class>/")
    dirs = [d for d in entries if os.path.isdir(os.path.join(folder, d))]
    if not dirs:
        raise DataError(f"image folder {folder!r} has no class sub-folders ({folder}/<class>/*.jpg)")
    files = {d: _list_images(os.path.join(folder, d)) for d in dirs}
    for d in dirs:
        if not files[d]:
            raise DataError(f"class folder {os.path.join(folder, d)!r} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
    names = sorted(dirs, key=int) if all(d.isdigit() for d in dirs) else dirs
    return tuple(names), files


def _decode_one(data, channels: int):
    """One encoded image -> uint8 [H, W, channels]. JPEG with the accurate integer DCT (the pixels PIL and
    libjpeg's defaults give; TF's default, the fast DCT, differs by up to 4 levels), other formats as
    `tf.io.decode_image` (first frame of a GIF; an alpha channel is dropped)."""
    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(data, channels=channels, expand_animations=False))


def decode_images(paths, size=None, channels: int = 3, resize: bool = False, batch_size: int = 1000) -> np.ndarray:
    """Decodes image files (PNG, JPEG, BMP, GIF) into one preallocated uint8 [N, H, W, channels] array.

    A `tf.data` map decodes the files on every core, `batch_size` at a time, in file order. `size` (height,
    width): every image must have it, or with `resize` each other one is area-resized to it; None = the first
    image's size. channels 3 decodes to RGB, 1 to grayscale. A corrupt file or one of another size raises
    DataError naming it. Peak memory: the array plus one batch.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise DataError("no images to decode")

    def decode_named(p):
        try:
            return _decode_one(tf.io.read_file(p), channels).numpy()
        except tf.errors.OpError as e:
            raise DataError(f"image {p!r} is corrupt or not an image: {e.message.splitlines()[0]}") from None

    if size is None:
        size, first = tuple(decode_named(paths[0]).shape[:2]), paths[0]
    else:
        first = None
    h, w = int(size[0]), int(size[1])

    def load(path):
        image = _decode_one(tf.io.read_file(path), channels)
        got = tf.shape(image)[:2]
        same = tf.reduce_all(tf.equal(got, [h, w]))
        if resize:
            other = lambda: tf.cast(tf.round(tf.clip_by_value(  # noqa: E731
                tf.image.resize(tf.cast(image, tf.float32), [h, w], method="area", antialias=True), 0.0, 255.0)),
                tf.uint8)
        else:  # a placeholder; the size is reported and refused below
            other = lambda: tf.zeros([h, w, channels], tf.uint8)  # noqa: E731
        return tf.ensure_shape(tf.cond(same, lambda: image, other), [h, w, channels]), got

    options = tf.data.Options()
    options.autotune.enabled = False  # no autotune thread to wait for when the iterator is deleted
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        load, num_parallel_calls=max(os.cpu_count() or 1, 1), deterministic=True).batch(batch_size)
    out = np.empty((len(paths), h, w, channels), np.uint8)
    it, n = iter(ds.with_options(options)), 0
    while n < len(paths):
        try:
            images, got = next(it)
        except tf.errors.OpError:  # name the file that failed to decode
            for p in paths[n:n + batch_size]:
                decode_named(p)
            raise
        got = got.numpy()
        if not resize:
            bad = np.flatnonzero((got != [h, w]).any(axis=1))
            if bad.size:
                p, (gh, gw) = paths[n + bad[0]], got[bad[0]]
                where = f"{first!r} is" if first else "the run needs"
                raise DataError(f"image {p!r} is {gh}x{gw} but {where} {h}x{w}: all images must have one size "
                                "(or set resize_to, --resize_images)")
        out[n:n + len(got)] = images.numpy()
        n += len(got)
    return out


def load_class_folders(root: str, resize_to=None, channels: int = 3) -> ArraySource:
    """A fully labelled data set in class folders, the layout of CIFAR-10's JPEG copy (and of `tfds.ImageFolder`):

        root/train/<class>/*.jpg    training images, every one labelled by its folder
        root/test/<class>/*.jpg     test images (optional; without them the training images stand in)

    Class names are the folder names (sorted; folders named 0, 1, ... keep their number as the label); the label
    column 'label' declares them, so they reach data_info.json, the model card and model_info.json. Every image is
    labelled: `--labelled_fraction` and `--labelled_selection` pick the labelled subset as for a TFDS data set.
    Images are decoded by `decode_images` straight into one uint8 array per split (docs/datasets.md: the
    measured time and memory against `tfds.ImageFolder`); a corrupt file, one of another size or an empty folder
    raises DataError naming it.
    """
    if not os.path.isdir(root):
        raise DataError(f"image folder {root!r} does not exist")
    channels = channels or 3
    size, resize = (tuple(resize_to), True) if resize_to else (None, False)
    names, files = _class_folders(os.path.join(root, "train"))
    numbered = all(n.isdigit() for n in names)

    def split(class_files, index):
        paths = [p for n in class_files for p in class_files[n]]
        labels = np.concatenate([np.full([len(class_files[n])], index(n), np.int64) for n in class_files])
        return paths, labels

    paths, train_y = split({n: files[n] for n in names}, lambda n: int(n) if numbered else names.index(n))
    train_x = decode_images(paths, size, channels, resize)
    size = size or tuple(train_x.shape[1:3])
    if os.path.isdir(os.path.join(root, "test")):
        test_names, test_files = _class_folders(os.path.join(root, "test"))
        unknown = sorted(set(test_names) - set(names))
        if unknown:
            raise DataError(f"test classes {unknown} in {os.path.join(root, 'test')!r} are not among the training "
                            f"classes {list(names)}")
        paths, test_y = split({n: test_files[n] for n in test_names},
                              lambda n: int(n) if numbered else names.index(n))
        test_x = decode_images(paths, size, channels, resize)
    else:
        test_x, test_y = train_x, train_y
    column = LabelColumn("categorical", None if numbered else len(names), names)
    return ArraySource(os.path.basename(os.path.normpath(root)), train_x, {"label": train_y}, test_x,
                       {"label": test_y}, {"label": column})


def load_image_folder(root: str, resize_to=None, channels: int = 3, batch_size: int = 256) -> ArraySource:
    """Your own partly labelled images, loaded with `keras.utils.image_dataset_from_directory`.

    Layout (PNG, JPEG, BMP or GIF files):
        root/labelled/<class>/*.png     labelled training images; <class> folders named 0, 1, ... keep that
                                        number as the label, other names are numbered in alphabetical order
        root/unlabelled/*.png           unlabelled training images (label -1), any sub-folders
        root/test/<class>/*.png         optional test split (else the labelled images stand in for it)
    At least one of labelled/ and unlabelled/ must hold images. Without either, a root with train/<class>/
    (every training image labelled by its folder) is read by `load_class_folders`. All images must have one size, unless
    `resize_to` (height, width) is given (then each is area-resized to it); `channels` 1 decodes to
    grayscale, 3 to RGB. The run then checks that size against the network's image_shape. A corrupt file, a wrongly sized one, an empty class folder or an empty split raises DataError
    naming the file or folder. The label column is 'label'.
    """
    if not os.path.isdir(root):
        raise DataError(f"image folder {root!r} does not exist")
    channels = channels or 3
    parts = {k: os.path.join(root, k) for k in ("labelled", "unlabelled", "test")}
    present = {k: p for k, p in parts.items() if os.path.isdir(p)}
    if "labelled" not in present and "unlabelled" not in present:
        if os.path.isdir(os.path.join(root, "train")):  # fully labelled class folders (CIFAR-10's JPEG copy)
            return load_class_folders(root, resize_to, channels)
        raise DataError(f"image folder {root!r} needs a labelled/<class>/ or an unlabelled/ sub-folder, or "
                        f"train/<class>/ (has {sorted(os.listdir(root))})")
    xs, ys, names = [], [], ()
    size, resize = (tuple(resize_to), True) if resize_to else (None, False)
    for part in ("labelled", "unlabelled"):
        if part in present:
            x, y, got, _ = _folder_split(present[part], part == "labelled", size, channels, resize, batch_size)
            xs.append(x), ys.append(y)
            names = got or names
            size = size or tuple(x.shape[1:3])
    train_x, train_y = np.concatenate(xs), np.concatenate(ys)
    if "test" in present:
        test_x, test_y, test_names, _ = _folder_split(present["test"], True, size, channels, resize, batch_size)
        if names and set(test_names) - set(names):
            raise DataError(f"test classes {sorted(set(test_names) - set(names))} in {present['test']!r} are "
                            f"not among the labelled classes {list(names)}")
        if names and not all(n.isdigit() for n in names):  # map test class names onto the labelled numbering
            test_y = np.asarray([names.index(test_names[i]) for i in test_y], np.int64)
    else:
        lab = train_y >= 0
        test_x, test_y = train_x[lab], train_y[lab]
    # named classes: exactly len(names) of them; numbered folders: the count is unknown (some may be missing),
    # the code check then only requires every number to be below the code's category count
    num = None if all(n.isdigit() for n in names) else len(names)
    columns = {"label": LabelColumn("categorical", num, tuple(names))} if names else {}
    return ArraySource(os.path.basename(os.path.normpath(root)), train_x, {"label": train_y}, test_x,
                       {"label": test_y}, columns)


def load_colour_digits(npz_path: str = "", seed: int = 2017) -> ArraySource:
    """The npz's digits (the shipped MNIST by default) coloured as `synthetic.colour_digits` describes:
    32x32x3, columns 'label' (digit), 'fg' and 'bg' (palette indices, with the colour names)."""
    mnist = load_npz(npz_path)
    if mnist.image_shape != (28, 28, 1):
        raise DataError(f"colour digits are built from 28x28 grey digits; {mnist.name!r} has {mnist.image_shape}")
    splits = {}
    for i, (x, y) in enumerate(((mnist.train_images, mnist.train_labels), (mnist.test_images, mnist.test_labels))):
        images, fg, bg = synthetic.colour_digits(x[..., 0], seed + i)
        splits[i] = (images, {"label": y["label"], "fg": fg, "bg": bg})
    columns = {"label": LabelColumn("categorical", 10, tuple(str(d) for d in range(10))),
               "fg": LabelColumn("categorical", len(synthetic.FOREGROUND), synthetic.FOREGROUND_NAMES),
               "bg": LabelColumn("categorical", len(synthetic.BACKGROUND), synthetic.BACKGROUND_NAMES)}
    return ArraySource(f"colour_digits_{seed}", *splits[0], *splits[1], columns)


def load_sprites(count: int, size: int, seed: int = 2017) -> ArraySource:
    """`count` training and count // 10 test sprites (`synthetic.sprites`), size x size x 1, with the factor
    columns 'shape' (categorical), 'scale', 'rotation', 'x', 'y' (continuous in [-1, 1]) and 'bright' (0/1)."""
    splits = [synthetic.sprites(n, size, seed + i) for i, n in enumerate((count, max(count // 10, 1)))]
    columns = {"shape": LabelColumn("categorical", len(synthetic.SHAPES), synthetic.SHAPES),
               "bright": LabelColumn("binary")}
    return ArraySource(f"sprites{size}_{seed}", splits[0][0], splits[0][1], splits[1][0], splits[1][1], columns)


def with_measured_labels(source: ArraySource, names) -> ArraySource:
    """`source` with the label columns `names` (slant, thickness) measured from its pixels (`data/moments.py`): float32
    in [-1, 1] on the training split's rank scale, for both splits; needs 28x28 grey images."""
    if not names:
        return source
    if tuple(source.image_shape) != (28, 28, 1):
        raise DataError(f"measured labels {list(names)} are measured on 28x28 grey digits; {source.name!r} has images "
                        f"of shape {source.image_shape}")
    from tf_ssinfogan.data import moments

    scales, measured = moments.fit_columns(source.train_images, tuple(names))
    train = {**source.train_labels, **measured}
    test = {**source.test_labels, **moments.scaled_columns(source.test_images, scales)}
    columns = {**source.label_columns, **{n: LabelColumn("continuous") for n in names}}
    return ArraySource(source.name, source.train_images, train, source.test_images, test, columns)


def load_source(config: DataConfig) -> ArraySource:
    """The configured data, with any `measured_labels` columns added."""
    return with_measured_labels(_load_source(config), tuple(config.measured_labels))


def _load_source(config: DataConfig) -> ArraySource:
    if config.source == "npz":
        return load_npz(config.npz_path)
    if config.source == "colour_digits":
        return load_colour_digits(config.npz_path, config.synthetic_seed)
    if config.source == "sprites":
        return load_sprites(config.synthetic_count, config.synthetic_size, config.synthetic_seed)
    if config.source == "image_folder":
        return load_image_folder(config.image_dir, tuple(config.resize_to) or None, config.channels or 3)
    return load_tfds(config.tfds_name, config.tfds_data_dir, config.tfds_download,
                     config.train_split, config.test_split, config.center_crop, config.resize_to,
                     config.channels)


def check_source_matches(source: ArraySource, latent: LatentConfig, image_shape) -> None:
    """Rejects a code spec or network shape that does not fit the data, naming both sides.

    A semi-supervised code needs its label column, of a kind and size its code kind accepts
    (`CodeKind.check_label_column`):
      * categorical (k values): a categorical column with k classes (values 0..k-1; -1 unlabelled), or a
        binary column when k is 2;
      * binary (d dims): a 0/1 column ([N] when d is 1, else [N, d]);
      * continuous (d dims): a float column ([N] or [N, d]).
    """
    if tuple(source.image_shape) != tuple(image_shape):
        raise ConfigError(
            f"the network expects images of shape {tuple(image_shape)} but {source.name!r} has {source.image_shape}"
        )
    for code in latent.semi_supervised_codes:
        if code.label not in source.train_labels:
            raise ConfigError(
                f"code {code.name!r} is tied to label {code.label!r}, but {source.name!r} has labels "
                f"{sorted(source.train_labels)}"
            )
        y = np.asarray(source.train_labels[code.label])
        kind_of(code).check_label_column(code, source.column(code.label), y,
                                         f"label {code.label!r} of {source.name!r}")


def labelled_candidates(source: ArraySource, codes) -> np.ndarray:
    """True for the training examples whose every semi-supervised label column is known."""
    ok = np.ones([len(source.train_images)], bool)
    for code in codes:
        ok &= known_rows(source.train_labels[code.label], source.column(code.label).kind)
    return ok
