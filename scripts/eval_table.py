"""Markdown table of evaluation scalars per run and step, from training's eval_history.jsonl and from
`python -m tf_ssinfogan.evaluate` reports (evaluation/eval_<step>.json), for docs/results.md.

  python scripts/eval_table.py runs/sprites_s1 runs/sprites_s2 --steps 2000,5000 \
      --column "Q_ss R^2 x=Eval/q_ss_test_r2/x" --column "r x=Eval/pixel_factor_pearson/x"

A column is "title=tag" with a scalar tag of `evaluator.scalars` (the TensorBoard tags under logs/eval); a cell
without a value shows "-". An evaluate report of a step wins over the history line of the same step.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys


def run_scalars(run_dir: str) -> dict:
    """{step: {tag: value}} of one run folder."""
    out = {}
    history = os.path.join(run_dir, "eval_history.jsonl")
    if os.path.exists(history):
        with open(history) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    out.setdefault(int(row.pop("step")), {}).update(row)
    reports = glob.glob(os.path.join(run_dir, "evaluation", "eval_*.json"))
    if reports:
        from tf_ssinfogan.evaluation import report

        for path in reports:
            step = int(re.search(r"eval_(\d+)\.json$", path).group(1))
            with open(path) as f:
                out.setdefault(step, {}).update(report.scalars(json.load(f)))
    return out


def table(runs, columns, steps=None, digits: int = 2) -> str:
    head = "| run | step | " + " | ".join(title for title, _ in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for run in runs:
        scalars = run_scalars(run)
        for step in sorted(scalars):
            if steps and step not in steps:
                continue
            cells = []
            for _, tag in columns:
                v = scalars[step].get(tag)
                cells.append("-" if v is None else f"{v:.{digits}f}")
            lines.append(f"| {os.path.basename(os.path.normpath(run))} | {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--column", action="append", required=True, help="'title=tag' (repeatable)")
    parser.add_argument("--steps", default="", help="comma-separated steps to keep (default: all)")
    parser.add_argument("--digits", type=int, default=2)
    args = parser.parse_args(argv)
    columns = []
    for c in args.column:
        if "=" not in c:
            parser.error(f"--column {c!r} is not 'title=tag'")
        columns.append(tuple(c.split("=", 1)))
    steps = {int(s) for s in args.steps.split(",") if s.strip()}
    for run in args.runs:
        if not os.path.isdir(run):
            parser.error(f"{run!r} is not a folder")
    print(table(args.runs, columns, steps, args.digits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
