"""Throughput of the training input pipeline alone (labelled/unlabelled mixing included), in images/s.

  python benchmarks/input_pipeline.py [--batch=128] [--steps=300] [--npz=path]

Reads the shipped MNIST (or --npz), builds the step-indexed stream of the reference run (1% labels, annealed
labelled-draw probability) and times batches from step 0 (mostly labelled) and from step 2000 (mostly
unlabelled). Compare with benchmarks/train_step.py: the pipeline must deliver far more images/s than a step
consumes.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_ssinfogan.data import sources
from tf_ssinfogan import config as C  # noqa: E402
from tf_ssinfogan.data import stream as data  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--npz", default="")
    args = p.parse_args()
    source = sources.load_npz(args.npz)
    stream = data.TrainStream(source, C.LatentConfig(), C.DataConfig(), args.batch, (0.0, 1.0))
    for start in (0, 2000):
        it = iter(stream.dataset(start, start + args.steps + 5))
        for _ in range(5):
            next(it)
        t0 = time.perf_counter()
        labelled = 0
        for _ in range(args.steps):
            _, _, mask = next(it)
            labelled += int(mask[0])
        dt = time.perf_counter() - t0
        print(json.dumps({"start_step": start, "batch": args.batch, "steps": args.steps,
                          "labelled_batches": labelled, "images_per_s": round(args.steps * args.batch / dt, 1),
                          "ms_per_batch": round(dt / args.steps * 1e3, 3), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
