"""What every command-line tool shares: flags generated from the config dataclasses, and one way to fail.

Each field of the config sections (`SECTIONS`; and `run_dir`) is one flag with the field's flat name, default and
help (`config._field` metadata: `flag` renames it or, as None, leaves it out; `choices` makes an enum; `unset` is the
flag value that means None). Tuples are comma lists, `codes` is the
'name:kind:dim[:label]' text. `config_from_flags` reads them back into a validated `ExperimentConfig`.

`run(main)` runs an absl `main`: flag errors (absl validators included) and the errors that mean bad input
(`UsageError`, `ConfigError`, `DataError`, missing files, bad values) print "error: <message>" and exit with
status 2, with no traceback. This module imports no TensorFlow: `--dry_run` and flag checks stay fast.

`--help` (also `-?`, `--helpshort`) prints the command's description and examples, then its own flags grouped by
section (`HELP_SECTIONS`; `section_of` says where each flag goes), each with its default and the first sentence
of its help, and exits 0; it reads the same through the console script and `python -m`. `--helpfull` is absl's full
list (every flag, absl's and TensorFlow's too; it exits 1). Library INFO log lines stay hidden unless
`--verbosity=0` (absl's default there is INFO); the package's own log lines (logger `tf_ssinfogan`) still show.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import sys
import textwrap
import typing
from typing import Callable, Iterable, Optional

from absl import app, flags

from tf_ssinfogan import config as C

FLAGS = flags.FLAGS
SECTIONS = {"latent": C.LatentConfig, "network": C.NetworkConfig, "data": C.DataConfig,
            "objective": C.ObjectiveConfig, "judge": C.JudgeConfig, "train": C.TrainConfig,
            "evaluation": C.EvalConfig}
EXPERIMENT_SECTIONS = ("latent", "network", "data", "objective", "judge", "train")  # an ExperimentConfig's
# Exit statuses of every command (sysexits.h where one fits), in this one place:
EXIT_BAD_INPUT = 2  # a bad flag, config, data or run folder; the message names it
EXIT_WRITE_FAILED = 74  # sysexits EX_IOERR: a file of the run folder could not be written
EXIT_PREEMPTED = 75  # sysexits EX_TEMPFAIL: stopped on request after a checkpoint; rerun to resume


class UsageError(ValueError):
    """Bad input from the user: the message says what and how to fix it (exit status 2)."""


# ------------------------------------------------------------------------------------------ flags from fields
def _flag_name(field: dataclasses.Field) -> Optional[str]:
    return field.metadata.get("flag", field.name) if "help" in field.metadata else None


def _base_type(cls, field: dataclasses.Field):
    hint = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _define(cls, field: dataclasses.Field, flag_values) -> str:
    name, meta, default = _flag_name(field), field.metadata, field.default
    kind = _base_type(cls, field)
    if "choices" in meta:
        flags.DEFINE_enum(name, default, list(meta["choices"]), meta["help"], flag_values=flag_values)
    elif kind is bool:
        flags.DEFINE_bool(name, default, meta["help"], flag_values=flag_values)
    elif kind is int:
        flags.DEFINE_integer(name, meta["unset"] if default is None and "unset" in meta else default, meta["help"],
                             flag_values=flag_values)
    elif kind is float:
        flags.DEFINE_float(name, default, meta["help"], flag_values=flag_values)
    elif field.name == "codes":
        flags.DEFINE_string(name, C.format_codes(default), meta["help"], flag_values=flag_values)
    elif kind is tuple:
        flags.DEFINE_list(name, [str(v) for v in default], meta["help"], flag_values=flag_values)
    else:
        flags.DEFINE_string(name, default, meta["help"], flag_values=flag_values)
    for alias in meta.get("aliases", ()):  # an older spelling, still accepted
        flags.DEFINE_alias(alias, name, flag_values=flag_values)
    return name


def config_fields(sections: Iterable[str] = tuple(SECTIONS), only: Iterable[str] = ()):
    """(section, dataclass, field) for every field with a flag, optionally only the named fields."""
    only = set(only)
    for section in sections:
        cls = SECTIONS[section]
        for field in dataclasses.fields(cls):
            if _flag_name(field) and (not only or field.name in only):
                yield section, cls, field


def define_config_flags(sections: Iterable[str] = EXPERIMENT_SECTIONS, only: Iterable[str] = (), run_dir: bool = True,
                        flag_values=FLAGS) -> list:
    """Defines a flag per config field (see the module docstring); returns the flag names."""
    names = []
    if run_dir:
        field = next(f for f in dataclasses.fields(C.ExperimentConfig) if f.name == "run_dir")
        names.append(_define(C.ExperimentConfig, field, flag_values))
    for _, cls, field in config_fields(sections, only):
        names.append(_define(cls, field, flag_values))
    if "image_shape" in names:
        flags.DEFINE_bool("resize_images", False, "Resize the images to --image_shape's height and width at load "
                          "time (tfds, image_folder; area interpolation).", flag_values=flag_values)
        flags.register_validator("image_shape", _ints_validator(3), "--image_shape must be three integers "
                                 "height,width,channels", flag_values=flag_values)
    if "center_crop" in names:
        flags.register_validator("center_crop", _ints_validator(0, 2), "--center_crop must be empty or two "
                                 "integers height,width", flag_values=flag_values)
    return names


def _ints_validator(*lengths):
    def check(values):
        try:
            [int(v) for v in values]
        except (TypeError, ValueError):
            return False
        return len(values) in lengths
    return check


def _value(cls, field: dataclasses.Field, flag_values):
    raw = flag_values[_flag_name(field)].value
    kind = _base_type(cls, field)
    if field.name == "codes":
        return C.parse_codes(raw)
    if kind is tuple:
        if typing.get_args(typing.get_type_hints(cls)[field.name])[:1] == (str,):  # Tuple[str, ...]
            return tuple(str(v).strip() for v in raw if str(v).strip())
        try:
            return tuple(int(v) for v in raw)
        except ValueError:
            raise C.ConfigError(f"{field.name} must be integers, got {raw}") from None
    if "unset" in field.metadata and raw is not None and raw < 0:  # e.g. labelled_count -1: use the fraction
        return None
    return raw


def section_from_flags(section: str, flag_values=FLAGS, only: Iterable[str] = (), **overrides):
    """One config dataclass from the flags of its fields (fields without a flag keep their defaults)."""
    cls = SECTIONS[section]
    values = {field.name: _value(cls, field, flag_values) for _, _, field in config_fields([section], only)}
    values.update(overrides)
    return cls(**values)


def derived_data_fields(image_shape, flag_values=FLAGS) -> dict:
    """The data fields without a flag: `resize_to` is --image_shape's height and width with --resize_images;
    `channels` is --image_shape's channel count for sources that decode images (all but npz)."""
    shape = tuple(int(v) for v in image_shape)
    return {"resize_to": shape[:2] if flag_values["resize_images"].value else (),
            "channels": shape[2] if flag_values["source"].value != "npz" and len(shape) == 3 else 0}


def config_from_flags(flag_values=FLAGS) -> C.ExperimentConfig:
    """The validated `ExperimentConfig` of the flags of `define_config_flags()` (see `derived_data_fields`)."""
    network = section_from_flags("network", flag_values)
    data = section_from_flags("data", flag_values, **derived_data_fields(network.image_shape, flag_values))
    return C.ExperimentConfig(run_dir=flag_values["run_dir"].value, latent=section_from_flags("latent", flag_values),
                              network=network, data=data, objective=section_from_flags("objective", flag_values),
                              judge=section_from_flags("judge", flag_values),
                              train=section_from_flags("train", flag_values)).validate()


# ------------------------------------------------------------------------------------------ one way to fail
def bad_input_errors() -> tuple:
    """The exception types that mean bad input (not a bug): a message, exit status 2."""
    from tf_ssinfogan.data.sources import DataError  # the data layer's error; importing it loads TensorFlow

    return (UsageError, C.ConfigError, DataError, FileNotFoundError, FileExistsError, FloatingPointError)


def _parse_flags(argv):
    try:
        argv = FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    if FLAGS["verbosity"].using_default_value:  # absl.app would raise it to INFO: every library's INFO lines
        FLAGS.verbosity = FLAGS["verbosity"].default
    logging.getLogger("tf_ssinfogan").setLevel(logging.INFO)  # the package's own lines still show
    return argv


def run(main: Callable[[list], Optional[int]], extra_errors: tuple = (), section: str = "options") -> None:
    """`absl.app.run(main)` with the shared error handling and `--help` (see the module docstring). `section`
    heads the command's own flags that `section_of` does not place."""
    _install_help(main, section)

    def guarded(argv):
        if len(argv) > 1:
            print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            return main(argv)
        except (UsageError, C.ConfigError) as e:  # without loading the data layer (TensorFlow)
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except Exception as e:  # noqa: BLE001 - narrowed just below; the data layer loads lazily
            if isinstance(e, bad_input_errors() + tuple(extra_errors)):
                print(f"error: {e}", file=sys.stderr)
                return EXIT_BAD_INPUT
            raise

    app.run(guarded, flags_parser=_parse_flags)


# ------------------------------------------------------------------------------------------ --help
HELP_SECTIONS = ("run folder", "data", "codes", "networks", "objective", "schedule", "evaluation", "export",
                 "sampling", "judge", "explorer", "execution", "options")
_CONFIG_SECTION = {"latent": "codes", "network": "networks", "data": "data", "objective": "objective",
                   "judge": "judge", "train": "schedule", "evaluation": "evaluation"}
_COMMAND_FLAG_SECTION = {"run_dir": "run folder", "checkpoint": "run folder", "dry_run": "run folder",
                         "resize_images": "data", "cpu_devices": "execution"}
_FIELD_SECTION = {  # the fields of TrainConfig (and any other field whose class's section does not fit)
    **dict.fromkeys(("run_dir", "checkpoint_every_epochs", "checkpoint_every_minutes", "max_checkpoints",
                     "grid_every_epochs"), "run folder"),
    **dict.fromkeys(("batch_size", "steps", "steps_per_epoch", "d_learning_rate", "g_learning_rate", "beta_1",
                     "beta_2", "d_average", "g_average", "fused_adam", "seed"), "schedule"),
    **dict.fromkeys(("eval_every_epochs", "final_classifier_eval"), "evaluation"),
    "export_at_end": "export",
    **dict.fromkeys(("strategy", "loop", "jit_compile", "precision", "verbose", "nan_policy", "deterministic"),
                    "execution"),
}
_HELP_FLAGS = (("help", "?"), ("helpshort", None))


def section_of(flag_name: str, default: str = "options", config_flag: bool = True) -> str:
    """The --help section of a flag. A config field's flag (`config_flag`): the field's `section` metadata, else
    `_FIELD_SECTION`, else its dataclass's (`_CONFIG_SECTION`). A command's own flag: `_COMMAND_FLAG_SECTION`,
    else `default` (the command's section)."""
    for section, _, field in (config_fields() if config_flag else ()):
        if _flag_name(field) == flag_name:
            return field.metadata.get("section") or _FIELD_SECTION.get(field.name) or _CONFIG_SECTION[section]
    return _COMMAND_FLAG_SECTION.get(flag_name, default)


def _top_level_cut(text: str, stops: str) -> str:
    """`text` up to the first of `stops` outside parentheses and quotes."""
    depth, quote = 0, False
    for i, ch in enumerate(text):
        if ch == "'" and (i == 0 or not text[i - 1].isalnum()) or ch == "'" and quote:
            quote = not quote
        elif not quote:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and ch in stops and (i + 1 == len(text) or text[i + 1] == " ") and \
                    not text[:i + 1].endswith(("e.g.", "i.e.", "cf.", "vs.")):
                return text[:i + (ch == ".")]
    return text


def _summary(text: str, width: int) -> str:
    """The first sentence of a flag's help; past two lines of `width`, without its parentheses, then only up to
    its first ';'."""
    text = re.sub(r"^<[^>]*>: |;? ?repeat this option to specify a list of values\.?$", "",  # absl's additions
                  " ".join(text.split()))
    text = _top_level_cut(text, ".")
    if len(text) > 2 * width:
        text = re.sub(r" \((?:[^()]|\([^()]*\))*\)", "", text)
    if len(text) > 2 * width:
        text = _top_level_cut(text, ";")
    return text if text.endswith(".") else text + "."


def _default_text(flag) -> str:
    value = flag.default
    if isinstance(flag, flags.MultiFlag):
        return ",".join(map(str, value or [])) or "(none; repeatable)"
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or '""'
    return str(value) if value != "" else '""'


def command_flags(module_name: str, flag_values=FLAGS) -> list:
    """The flags a command defines through `define_config_flags` and itself (its module; '__main__' under
    `python -m`), in definition order."""
    found = flag_values.get_flags_for_module(__name__) + flag_values.get_flags_for_module(module_name)
    seen, out = set(), []
    for flag in found:
        if flag.name not in seen and flag.name not in dict(_HELP_FLAGS):
            seen.add(flag.name)
            out.append(flag)
    return out


def command_name(module_name: str) -> str:
    """tf_ssinfogan.train_classifier -> tf-ssinfogan-train-classifier (the console script of setup.py)."""
    return "tf-ssinfogan-" + module_name.rsplit(".", 1)[-1].replace("_", "-")


def help_text(module_name: str, doc: str = "", section: str = "options", flag_values=FLAGS,
              width: Optional[int] = None, defined_in: str = "") -> str:
    """What `--help` prints for the command of `module_name` (see the module docstring); `defined_in`: the module
    that defined its flags when not `module_name` ('__main__' under `python -m`)."""
    width = width or min(max(shutil.get_terminal_size((100, 24)).columns, 80), 120)
    lines = [textwrap.dedent(doc).strip(), "",
             f"usage: {command_name(module_name)} [--flagfile=FILE] [--FLAG=VALUE ...]",
             f"   or: python -m {module_name} [--flagfile=FILE] [--FLAG=VALUE ...]"]
    groups, config_names = {}, {f.name for f in flag_values.get_flags_for_module(__name__)}
    for flag in command_flags(defined_in or module_name, flag_values):
        groups.setdefault(section_of(flag.name, section, flag.name in config_names), []).append(flag)
    left = 34
    for name in sorted(groups, key=lambda g: HELP_SECTIONS.index(g) if g in HELP_SECTIONS else len(HELP_SECTIONS)):
        lines += ["", f"{name}:"]
        for flag in groups[name]:
            head = f"  --{flag.name}={_default_text(flag)}"
            text = _summary(flag.help, width - left - 2)
            choices = getattr(flag.parser, "enum_values", None)
            if choices and not all(re.search(rf"\b{re.escape(c)}\b", text) for c in choices):
                text += f" One of {'|'.join(choices)}."
            body = textwrap.wrap(text, width - left - 2) or [""]
            if len(head) + 2 > left:
                lines.append(head)
            else:
                lines.append(head.ljust(left) + body.pop(0))
            lines += [" " * left + b for b in body]
    lines += ["", "Booleans: --NAME or --noNAME. --flagfile=FILE reads flags from a file (one per line; later flags "
              "win).", "Each flag's full description, with absl's and TensorFlow's flags: --helpfull.", ""]
    return "\n".join(lines)


class _HelpFlag(flags.BooleanFlag):
    """--help / -? / --helpshort: `help_text` on stdout, exit status 0."""

    def __init__(self, name, short_name, text: Callable[[], str]):
        super().__init__(name, False, "show this command's flags by section", short_name=short_name,
                         allow_hide_cpp=True)
        self._text = text

    def parse(self, argument):
        if self._parse(argument):
            sys.stdout.write(self._text())
            sys.stdout.flush()
            sys.exit(0)


def _install_help(main: Callable, section: str) -> None:
    """Replaces absl's --help (the `__main__` docstring and key flags: a bare usage line through a console script)
    by `help_text` of `main`'s command; --helpfull stays absl's, with the command's docstring."""
    module = sys.modules.get(main.__module__)
    spec = getattr(module, "__spec__", None)
    module_name = spec.name if spec is not None and spec.name else main.__module__
    if module_name == "__main__":  # python tf_ssinfogan/train.py
        module_name = f"{__package__}.{os.path.splitext(os.path.basename(sys.argv[0]))[0]}"
    doc = getattr(module, "__doc__", "") or ""
    main_module = sys.modules.get("__main__")
    if main_module is not None and not main_module.__doc__:  # a console script: --helpfull shows the description
        main_module.__doc__ = doc
    app.define_help_flags()
    for name, short_name in _HELP_FLAGS:
        for n in (name, short_name):
            if n and n in FLAGS:
                delattr(FLAGS, n)
        flags.DEFINE_flag(_HelpFlag(name, short_name, lambda: help_text(module_name, doc, section,
                                                                         defined_in=main.__module__)),
                          module_name="absl.app")


def require(condition: bool, message: str) -> None:
    """Raises UsageError(message) unless `condition` holds."""
    if not condition:
        raise UsageError(message)
