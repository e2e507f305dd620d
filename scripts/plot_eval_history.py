"""Plot evaluation metrics against training steps for one or more runs (from their eval_history.jsonl).

  python scripts/plot_eval_history.py runs/frac0 runs/frac0.2 runs/frac1 runs/frac10 --out docs/figures/curves.png

Each run folder must have been trained with --eval_every_epochs=N. One panel per metric, one line per run
(labelled by the folder name).
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = ["Eval/classifier_accuracy/digit", "Eval/q_ss_test_accuracy/digit", "Eval/judge_frechet_distance",
           "Eval/information_bound/digit"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", default=",".join(METRICS))
    args = p.parse_args()
    metrics = args.metrics.split(",")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    for run in args.runs:
        path = os.path.join(run, "eval_history.jsonl")
        if not os.path.isfile(path):
            raise SystemExit(f"error: {path} does not exist (train with --eval_every_epochs=N)")
        rows = [json.loads(line) for line in open(path) if line.strip()]
        for r in rows:  # histories written before the distance got its own name
            if "Eval/frechet_distance" in r:
                r.setdefault("Eval/judge_frechet_distance", r["Eval/frechet_distance"])
        for ax, metric in zip(axes, metrics):
            pts = [(r["step"], r[metric]) for r in rows if metric in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=os.path.basename(os.path.normpath(run)))
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric.replace("Eval/", ""), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
