"""Checks that pip resolves the package (all extras) with the oldest and the newest TensorFlow of its range.

  python tools/check_resolver.py            # needs a package index (PyPI); installs nothing (--dry-run)

The range is read from setup.py (`tensorflow>=A.B,<C.D`): the check asks for `tensorflow==A.B.*` and for the
last minor below C.D. Prints the versions pip picks for the stack; exits 1 if pip refuses one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOWN = ("tensorflow", "keras", "tf-keras", "tensorflow-probability", "tensorflow-datasets", "tensorboard",
         "numpy", "ai-edge-litert", "tensorflow-serving-api")


def tensorflow_bounds(setup_text: str):
    """('2.20', '2.21') from a requirement 'tensorflow>=2.20,<2.22' in setup.py."""
    m = re.search(r'"tensorflow>=(\d+)\.(\d+),<(\d+)\.(\d+)"', setup_text)
    if not m:
        raise SystemExit("setup.py has no requirement of the form tensorflow>=A.B,<C.D")
    lo_major, lo_minor, hi_major, hi_minor = map(int, m.groups())
    if hi_major != lo_major or hi_minor <= lo_minor:
        raise SystemExit(f"unexpected TensorFlow range in setup.py: {m.group(0)}")
    return f"{lo_major}.{lo_minor}", f"{hi_major}.{hi_minor - 1}"


def resolve(tf_minor: str) -> dict:
    """{name: version} that `pip install --dry-run` picks for the package with tensorflow==<tf_minor>.*."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
               "--disable-pip-version-check", "--report", report, f"{REPO}[all,test]", f"tensorflow=={tf_minor}.*"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"pip refused the package with tensorflow=={tf_minor}.*")
        with open(report) as f:
            items = json.load(f)["install"]
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in items}


def main() -> int:
    with open(os.path.join(REPO, "setup.py")) as f:
        bounds = tensorflow_bounds(f.read())
    for tf_minor in bounds:
        picked = resolve(tf_minor)
        if not picked.get("tensorflow", "").startswith(tf_minor + "."):
            print(f"pip picked tensorflow {picked.get('tensorflow')} for tensorflow=={tf_minor}.*", file=sys.stderr)
            return 1
        print(f"tensorflow=={tf_minor}.* resolves: " + ", ".join(f"{n} {picked[n]}" for n in SHOWN if n in picked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
