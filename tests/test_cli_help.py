"""`--help` of every command: through its console script and `python -m`, its description, examples and its own
flags by section, each with its default; `--helpfull` still lists absl's flags."""

import ast
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from tf_ssinfogan import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("train", "evaluate", "export", "sample", "train_classifier", "explore")


def _script(module: str) -> str:
    """The console script of setup.py, from this interpreter's bin/ (the venv may not be activated)."""
    name = "tf-ssinfogan-" + module.replace("_", "-")
    path = os.path.join(os.path.dirname(sys.executable), name)
    path = path if os.path.exists(path) else shutil.which(name)
    if not path:
        pytest.skip(f"console script {name} is not installed (pip install -e .)")
    return path


@functools.lru_cache(maxsize=None)
def _run_once(args):
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "110"})


def _run(args):
    """The command's result; each distinct command line runs once per session (tests only read the output)."""
    return _run_once(tuple(args))


def _expected_flags(module: str) -> set:
    """The command's own flags, read from its source: its DEFINE_* calls and the config fields it asks
    `cli.define_config_flags` for (independently of the help code under test)."""
    source = open(os.path.join(REPO, "tf_ssinfogan", f"{module}.py")).read()
    names = set(re.findall(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"", source))
    tree = ast.parse(source)
    constants = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, (ast.Tuple, ast.List))}
    for call in [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") ==
                 "define_config_flags"]:
        kw = {k.arg: k.value for k in call.keywords}
        sections = ast.literal_eval(kw["sections"]) if "sections" in kw else cli.EXPERIMENT_SECTIONS
        only = ()
        if "only" in kw:
            only = constants[kw["only"].id] if isinstance(kw["only"], ast.Name) else ast.literal_eval(kw["only"])
        names |= {cli._flag_name(f) for _, _, f in cli.config_fields(sections, only)}
        names |= {a for _, _, f in cli.config_fields(sections, only) for a in f.metadata.get("aliases", ())}
        if "run_dir" not in kw or ast.literal_eval(kw["run_dir"]):
            names.add("run_dir")
        if "image_shape" in names:
            names.add("resize_images")
    return names


def _sections(text: str) -> dict:
    """{section: {flag: default}} of a --help text."""
    out, current = {}, None
    for line in text.splitlines():
        if re.match(r"^[a-z][a-z ]*:$", line):
            current = out.setdefault(line[:-1], {})
        elif current is not None and line.startswith("  --"):
            name, _, default = line.split()[0][2:].partition("=")
            current[name] = default
        elif not line:
            current = None
    return out


@pytest.mark.parametrize("module", COMMANDS)
def test_help_through_the_console_script_lists_the_commands_own_flags_by_section(module):
    out = _run([_script(module), "--help"])
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    first_line = open(importlib.util.find_spec(f"tf_ssinfogan.{module}").origin).read().split('"""', 2)[1]
    first_line = first_line.strip().splitlines()[0]
    assert first_line in text  # the description
    assert f"python -m tf_ssinfogan.{module} --" in text  # the examples
    sections = _sections(text)
    listed = {name for flags in sections.values() for name in flags}
    expected = _expected_flags(module)
    assert expected and listed == expected, (sorted(expected - listed), sorted(listed - expected))
    assert set(sections) <= set(cli.HELP_SECTIONS) - {"options"}, sorted(sections)
    assert "helpfull" not in listed and "verbosity" not in listed  # absl's own flags stay in --helpfull
    assert len(text.splitlines()) < 200


def test_train_help_groups_by_section_with_defaults():
    sections = _sections(_run([_script("train"), "--help"]).stdout)
    assert {"run folder", "data", "codes", "networks", "objective", "schedule", "evaluation", "export",
            "execution"} <= set(sections)
    assert sections["objective"]["ss_weight"] == "2.0" and sections["schedule"]["batch_size"] == "128"
    assert sections["codes"]["codes"] == "digit:cat:10:label,c1:cont:1,c2:cont:1"
    assert sections["data"]["npz_path"] == '""' and sections["export"]["export_at_end"] == "true"
    assert sections["run folder"]["run_dir"] == "runs/mnist" and "checkpoint_every_epochs" in sections["run folder"]
    assert sections["evaluation"]["final_classifier_eval"] == "false"


@pytest.mark.parametrize("module", COMMANDS)
def test_both_doors_print_the_same_help(module):
    script = _run([_script(module), "--help"])
    module_run = _run([sys.executable, "-m", f"tf_ssinfogan.{module}", "--help"])
    assert module_run.returncode == 0 and script.stdout == module_run.stdout


def test_helpfull_keeps_the_full_list_with_the_description():
    out = _run([_script("sample"), "--helpfull"])
    assert "Sample an image grid from an exported model" in out.stdout  # not a bare USAGE line
    assert "--verbosity" in out.stdout and "--flagfile" in out.stdout and "--num" in out.stdout


def test_help_text_summarises_long_helps_and_names_choices():
    assert cli._summary("First part (with detail; more). Second sentence.", 60) == "First part (with detail; more)."
    assert cli._summary("Fix a code, e.g. digit=3. More.", 60) == "Fix a code, e.g. digit=3."
    long = "Momentum (" + "x " * 80 + ") of the weights; 0 = off (reference)."
    assert cli._summary(long, 40) == "Momentum of the weights; 0 = off."
    assert cli._summary("<a|b>: Pick one; the rest (" + "y " * 60 + ").", 30) == "Pick one; the rest."
    assert cli._summary("<a|b>: Pick one; " + "z " * 40, 30) == "Pick one."  # absl's enum prefix is dropped


def test_every_train_field_has_a_help_section():
    """A new TrainConfig field goes into a section on purpose: add it to cli._FIELD_SECTION (or give its
    config field a `section` metadata entry)."""
    unplaced = [f.name for _, cls, f in cli.config_fields(["train"])
                if f.name not in cli._FIELD_SECTION and "section" not in f.metadata]
    assert not unplaced, unplaced
    for section, _, field in cli.config_fields():
        assert cli.section_of(cli._flag_name(field)) in cli.HELP_SECTIONS
    assert cli.section_of("seed", "sampling", config_flag=False) == "sampling"  # a command's own --seed
    assert cli.section_of("ss_weight") == "objective" and cli.section_of("codes") == "codes"
