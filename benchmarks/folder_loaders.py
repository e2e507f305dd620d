"""Time and peak memory of loading a class-folder tree (ROOT/train/<class>/, ROOT/test/<class>/) into memory.

  python benchmarks/folder_loaders.py --root=/tmp/cifar10_jpeg [--loaders=package,tfds_image_folder,keras]

Each loader runs once, in a fresh child process (so that one's memory and file cache warm-up do not count
for the next one, apart from the operating system's page cache: run it twice and read the second pass for a
warm cache). Reported per loader: seconds to load both splits into uint8 arrays (after the imports), the
process's resident memory after the imports and its peak (ru_maxrss), the arrays' shape and a digest of them.

  package            `sources.load_image_folder` (the train/test layout: PIL decodes into one preallocated array)
  tfds_image_folder  `tfds.ImageFolder(ROOT)`, `as_dataset(split, as_supervised=True)` batched by 1,024 into one
                     preallocated array per split (TF decodes the files)
  keras              the package's reader of the labelled/ layout (`keras.utils.image_dataset_from_directory`,
                     after a PIL check of every file's header), applied to train/ and test/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

LOADERS = ("package", "tfds_image_folder", "keras")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(loader: str, root: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf  # noqa: F401  (every loader runs in a TensorFlow process, as training does)

    from tf_ssinfogan.data import sources

    if loader == "tfds_image_folder":
        import tensorflow_datasets as tfds
    after_imports = _rss_mb()
    t0 = time.perf_counter()
    if loader == "package":
        src = sources.load_image_folder(root, channels=3)
        arrays = [(src.train_images, src.train_labels["label"]), (src.test_images, src.test_labels["label"])]
    elif loader == "tfds_image_folder":
        builder = tfds.ImageFolder(root)
        arrays = []
        for split in ("train", "test"):
            n = builder.info.splits[split].num_examples
            x, y, i = None, np.empty([n], np.int64), 0
            ds = builder.as_dataset(split=split, shuffle_files=False, as_supervised=True, batch_size=1024)
            for images, labels in tfds.as_numpy(ds):
                if x is None:
                    x = np.empty((n,) + images.shape[1:], np.uint8)
                x[i:i + len(images)], y[i:i + len(images)] = images, labels
                i += len(images)
            arrays.append((x, y))
    else:
        arrays = []
        for split in ("train", "test"):
            x, y, _, _ = sources._folder_split(os.path.join(root, split), True, None, 3, False, 256)
            arrays.append((x, y))
    seconds = time.perf_counter() - t0
    digest = hashlib.sha1()
    for x, y in arrays:
        digest.update(np.ascontiguousarray(x).tobytes())
    return {"loader": loader, "seconds": round(seconds, 2), "rss_after_imports_mb": round(after_imports),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "train": list(arrays[0][0].shape), "test": list(arrays[1][0].shape),
            "pixels_sha1": digest.hexdigest()[:12]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="ROOT with train/<class>/ and test/<class>/")
    parser.add_argument("--loaders", default=",".join(LOADERS), help=f"comma list of {LOADERS}")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.root)))
        return 0
    for loader in args.loaders.split(","):
        if loader not in LOADERS:
            parser.error(f"unknown loader {loader!r} (one of {LOADERS})")
        out = subprocess.run([sys.executable, __file__, f"--root={args.root}", f"--child={loader}"],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{loader}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
