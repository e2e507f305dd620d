"""Packaging: ranges in setup.py, pins in constraints.txt, console scripts, no references outside the repo."""

import ast
import importlib.util
import os
import re

import pytest
from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_lists():
    """INSTALL_REQUIRES, EXTRAS (literal part) and CONSOLE_SCRIPTS from setup.py, without running it."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found["INSTALL_REQUIRES"], found["EXTRAS"], found["CONSOLE_SCRIPTS"]


def _pins():
    pins = {}
    for line in open(os.path.join(REPO, "constraints.txt")):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_metadata_has_ranges_and_the_lock_pins_a_version_inside_each():
    install, extras, _ = _setup_lists()
    pins = _pins()
    for text in install + [r for reqs in extras.values() for r in reqs]:
        req = Requirement(text)
        assert not any(s.operator == "==" for s in req.specifier), f"{text}: an exact pin in the package metadata"
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not locked in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is outside {text}"
    assert "tf-keras" in pins  # brought by tensorflow-probability[tf], locked with the rest


@pytest.mark.parametrize("index", range(6))
def test_console_scripts_point_at_a_run_function(index):
    _, _, scripts = _setup_lists()
    assert len(scripts) == 6
    name, target = (p.strip() for p in scripts[index].split("="))
    module, function = target.split(":")
    assert name == "tf-ssinfogan-" + module.rsplit(".", 1)[1].replace("_", "-")
    # read, not imported: each CLI module defines its absl flags at import, and some share names
    tree = ast.parse(open(os.path.join(REPO, *module.split(".")) + ".py").read())
    assert function in [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.args.args]


def test_no_file_refers_to_files_outside_the_repository():
    banned = ["REFERENCE" + ".md", "ENVIRONMENT" + ".md", "../" + "shared/"]
    hits = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("runs", "build", "__pycache__")
                   and not d.endswith(".egg-info")]
        for f in files:
            if f.endswith((".py", ".md", ".flags", ".txt", ".cfg", ".ini", ".json", ".sh")) or f == "run":
                text = open(os.path.join(folder, f), errors="replace").read()
                hits += [f"{os.path.relpath(os.path.join(folder, f), REPO)}: {b}" for b in banned if b in text]
    assert not hits, hits


def test_the_resolver_check_asks_for_both_ends_of_the_tensorflow_range():
    spec = importlib.util.spec_from_file_location("check_resolver", os.path.join(REPO, "tools", "check_resolver.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.tensorflow_bounds('"tensorflow>=2.20,<2.22",') == ("2.20", "2.21")
    assert tool.tensorflow_bounds(open(os.path.join(REPO, "setup.py")).read())[0] == "2.20"
    with pytest.raises(SystemExit, match="unexpected TensorFlow range"):
        tool.tensorflow_bounds('"tensorflow>=2.21,<2.21"')
