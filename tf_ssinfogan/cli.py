"""What every command-line tool shares: flags generated from the config dataclasses, and one way to fail.

Each field of `LatentConfig`, `NetworkConfig`, `DataConfig` and `TrainConfig` (and `run_dir`) is one flag with
the field's flat name, default and help (`config._field` metadata: `flag` renames it or, as None, leaves it out;
`choices` makes an enum; `unset` is the flag value that means None). Tuples are comma lists, `codes` is the
'name:kind:dim[:label]' text. `config_from_flags` reads them back into a validated `ExperimentConfig`.

`run(main)` runs an absl `main`: flag errors (absl validators included) and the errors that mean bad input
(`UsageError`, `ConfigError`, `DataError`, missing files, bad values) print "error: <message>" and exit with
status 2, with no traceback. This module imports no TensorFlow: `--dry_run` and flag checks stay fast.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Callable, Iterable, Optional

from absl import app, flags

from tf_ssinfogan import config as C

FLAGS = flags.FLAGS
SECTIONS = {"latent": C.LatentConfig, "network": C.NetworkConfig, "data": C.DataConfig, "train": C.TrainConfig}
EXIT_BAD_INPUT = 2


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
    return name


def config_fields(sections: Iterable[str] = tuple(SECTIONS), only: Iterable[str] = ()):
    """(section, dataclass, field) for every field with a flag, optionally only the named fields."""
    only = set(only)
    for section in sections:
        cls = SECTIONS[section]
        for field in dataclasses.fields(cls):
            if _flag_name(field) and (not only or field.name in only):
                yield section, cls, field


def define_config_flags(sections: Iterable[str] = tuple(SECTIONS), only: Iterable[str] = (), run_dir: bool = True,
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
                              network=network, data=data, train=section_from_flags("train", flag_values)).validate()


# ------------------------------------------------------------------------------------------ one way to fail
def bad_input_errors() -> tuple:
    """The exception types that mean bad input (not a bug): a message, exit status 2."""
    from tf_ssinfogan.sources import DataError  # the data layer's error; importing it loads TensorFlow

    return (UsageError, C.ConfigError, DataError, FileNotFoundError, FileExistsError, FloatingPointError)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def run(main: Callable[[list], Optional[int]], extra_errors: tuple = ()) -> None:
    """`absl.app.run(main)` with the shared error handling (see the module docstring)."""

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


def require(condition: bool, message: str) -> None:
    """Raises UsageError(message) unless `condition` holds."""
    if not condition:
        raise UsageError(message)
