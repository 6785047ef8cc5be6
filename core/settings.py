"""The one config mechanism: frozen dataclasses whose fields are the settings, the JSON keys and the flags.

Every settings class of the project (the shards job's ShardsConfig, the trainer's TrainConfig with
its nested MelConfig / AugmentConfig, the baseline's BaselineConfig) is a frozen dataclass that checks
itself in `__post_init__` (ValueError), with `Literal[...]` fields for fixed choices (core.choices).
From the fields alone this module generates the command-line flags (`--epochs 3`, nested sections as
`--mel.n_mels 64`, booleans as `--flag` / `--no-flag`, a field's `metadata["help"]` as its help),
applies a partial nested mapping of overrides (a JSON file, the flags given) with type and range
checks, and lists differences. Flags and file keys come from the dataclass fields, so they cannot
drift from the code.

    parser = checks.ArgumentParser()
    settings.add_flags(parser, ShardsConfig, "job settings")
    args = parser.parse_args(argv)
    cfg = settings.apply_overrides(ShardsConfig(), settings.flag_overrides(args, ShardsConfig))
    settings.flatten(cfg)            # {"num_folds": 5, ...}; nested sections as "mel.n_mels"
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from typing import Any, Mapping

from core import choices, fs
from core.errors import UserError

Limits = Mapping[str, tuple[float | None, float]]  # dotted key -> (low or None, high)


class ConfigError(UserError):
    """A config file or flag names an unknown setting or gives a value of the wrong type or range."""


def field_types(cls: type) -> dict[str, Any]:
    """{field: resolved type} of a dataclass (the modules use `from __future__ import annotations`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_SCALARS = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}


def check_types(cfg: Any, error: type[Exception]) -> None:
    """Raises `error` when a scalar field of dataclass `cfg` holds a value of another type (True is no
    int, 2.5 no int); Literal fields are checked by core.choices.check, nested sections by their class."""
    for name, tp in field_types(type(cfg)).items():
        value = getattr(cfg, name)
        inner = _optional_inner(tp)
        if inner is not None:
            if value is None:
                continue
            tp = inner
        accepted = _SCALARS.get(tp)
        if accepted is None:
            continue
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise error(f"{name} must be of type {tp.__name__}, got {value!r}")


def _optional_inner(tp: Any) -> Any | None:
    """T for `T | None` / Optional[T], else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def coerce(value: Any, tp: Any, key: str, limits: Limits | None = None) -> Any:
    """A JSON value checked against a scalar field type (int, float, str, bool, a Literal of them, or
    `T | None`), and against `limits[key]`. A Literal's membership is checked by the config class."""
    inner = _optional_inner(tp)
    if inner is not None:
        if value is None:
            return None
        tp = inner
    values = choices.of(tp)
    if values is not None:
        tp = type(values[0])
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"config field {key} has unsupported type {tp!r}")  # a bug in a config class
    if not ok:
        raise ConfigError(f"{key} must be of type {tp.__name__}, got {value!r}")
    if tp is float and not math.isfinite(value):  # NaN passes every `x < low` range check
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    low, high = (limits or {}).get(key, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{key}={value!r} is out of range (must be {f'>= {low:g} and ' if low is not None else ''}"
                          f"<= {high:g})")
    return float(value) if tp is float else value


def apply_overrides(cfg: Any, overrides: Mapping[str, Any], prefix: str = "", flags: bool = False) -> Any:
    """Returns `cfg` with `overrides` (a possibly partial, possibly nested mapping) applied.

    Unknown keys, wrongly typed values, values outside the class's `LIMITS` (a ClassVar {field: (low or
    None, high)}: bounds whose absurd values would otherwise fail deep inside TensorFlow or numpy) and
    values the class refuses (its __post_init__'s ValueError) raise ConfigError naming the key, as the
    flag (`--mel.n_mels`) when `flags` says the overrides came from the command line.
    """
    shown = ("--" if flags else "") + prefix
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"config section {prefix.rstrip('.') or '(top level)'} must be a JSON object, "
                          f"got {overrides!r}")
    ftypes = field_types(type(cfg))
    unknown = sorted(set(overrides) - set(ftypes))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(shown + k for k in unknown)}; valid keys"
                          f"{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(ftypes))}")
    changes = {}
    for key, value in overrides.items():
        if dataclasses.is_dataclass(ftypes[key]):
            changes[key] = apply_overrides(getattr(cfg, key), value, f"{prefix}{key}.", flags)
        else:
            bounds = getattr(type(cfg), "LIMITS", {}).get(key)
            changes[key] = coerce(value, ftypes[key], shown + key, {shown + key: bounds} if bounds else None)
    try:
        return dataclasses.replace(cfg, **changes)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        if flags:
            raise ConfigError(f"invalid {'--' + prefix + '* ' if prefix else ''}flag(s): {e}") from e
        raise ConfigError(f"invalid config{' section ' + prefix.rstrip('.') if prefix else ''}: {e}") from e


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def leaf_fields(cls: type, prefix: str = "", default: Any = None) -> list[tuple[str, Any, Any, str]]:
    """(dotted name, type, default, help) of every scalar field under `cls`, nested sections flattened.

    `default`: the instance whose values are the defaults (a section's own default, e.g. TrainConfig's
    MelConfig(scaling="db")); a field without a default has dataclasses.MISSING.
    """
    out = []
    ftypes = field_types(cls)
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name) if default is not None else _default(f)
        if dataclasses.is_dataclass(ftypes[f.name]):
            out += leaf_fields(ftypes[f.name], f"{prefix}{f.name}.", value)
        else:
            out.append((prefix + f.name, ftypes[f.name], value, f.metadata.get("help", "")))
    return out


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str, defaults: Any = None,
              default_label: str = "default") -> None:
    """One flag per leaf field of `cls` (argparse default None = "not given", so files and presets apply);
    a field without a default is a required flag."""
    group = parser.add_argument_group(title)
    for name, tp, default, help_text in leaf_fields(cls, default=defaults):
        required = default is dataclasses.MISSING
        shown = "required" if required else f"{default_label}: {default!r}"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "required": required,
                                  "help": f"{help_text} ({shown})" if help_text else shown}
        tp = _optional_inner(tp) or tp
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif choices.of(tp) is not None:
            kwargs["choices"] = choices.of(tp)
            kwargs["type"] = type(choices.of(tp)[0])  # "1" -> 1 for an int choice
        else:
            kwargs["type"] = tp
            kwargs["metavar"] = tp.__name__.upper()
        group.add_argument(f"--{name}", **kwargs)


def flag_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags of `cls`'s fields actually given, as a nested dict for apply_overrides."""
    nested: dict[str, Any] = {}
    for name, _, _, _ in leaf_fields(cls):
        value = getattr(args, name, None)
        if value is None:
            continue
        *sections, leaf = name.split(".")
        node = nested
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = value
    return nested


def _get_dotted(cfg: Any, name: str) -> Any:
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


def flatten(cfg: Any) -> dict[str, Any]:
    """{"mel.n_mels": 128, "epochs": 10, ...}: every leaf setting under its dotted flag name."""
    return {name: _get_dotted(cfg, name) for name, _, _, _ in leaf_fields(type(cfg))}


def differences(a: Any, b: Any, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Dotted settings where `a` and `b` differ, as "key: a_value -> b_value", except `ignore`d keys."""
    fa, fb = flatten(a), flatten(b)
    return [f"{k}: {fa[k]!r} -> {fb[k]!r}" for k in fa if k not in ignore and fa[k] != fb[k]]


def read_json_object(path: str) -> dict[str, Any]:
    """The JSON object in `path` (a config file), or ConfigError saying why not."""
    if not fs.exists(path):
        raise ConfigError(f"config file {path} does not exist")
    if fs.isdir(path):
        raise ConfigError(f"config file {path} is a directory; pass the JSON file (e.g. RUN_DIR/config.json)")
    try:
        data = fs.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid JSON text: {e}") from e
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def save(cfg: Any, path: str) -> None:
    """The resolved settings as JSON beside an output (`--config` of the same class reads it back)."""
    fs.write_json(path, dataclasses.asdict(cfg))
