"""Build typed dataclasses from YAML mappings, with one-line errors naming the file and key.

Generic over frozen dataclasses: unknown keys (with a difflib suggestion), missing keys, wrong
types and out-of-range numbers (bounds in field metadata, see `bounds`) are all reported.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, TypeVar, Union

import yaml

from runtimes.errors import ProfileError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")


def bounds(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """Field metadata: inclusive bounds checked by the loader."""
    return {"lo": lo, "hi": hi}


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURALS = {int: "integers", float: "numbers", str: "strings"}


def key_error(src: str, key: str, msg: str) -> ProfileError:
    """The error for a bad value: 'SRC: key 'a.b' MSG'."""
    return ProfileError(f"{src}: key '{key}' {msg}")


def _coerce(tp: Any, value: Any, key: str, src: str) -> Any:
    """Check `value` against the type hint `tp`, converting lists to tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(options[0], value, key, src)
        for opt in options:
            try:
                return _coerce(opt, value, key, src)
            except ProfileError:
                continue
        wanted = " or ".join(_describe(o) for o in options)
        raise key_error(src, key, f"must be {wanted}, got {type(value).__name__} {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, key, src)
    if origin is tuple:
        return _coerce_tuple(args, value, key, src)
    return _coerce_scalar(tp, value, key, src)


def _describe(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_PLURALS.get(args[0], 'values')}"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce_tuple(args: tuple[Any, ...], value: Any, key: str, src: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise key_error(src, key, f"must be a list, got {type(value).__name__} {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(args[0], v, f"{key}[{i}]", src) for i, v in enumerate(value))
    if len(value) != len(args):
        raise key_error(src, key, f"must be a list of {len(args)} values, got {len(value)}")
    return tuple(_coerce(a, v, f"{key}[{i}]", src) for i, (a, v) in enumerate(zip(args, value, strict=False)))


def _coerce_scalar(tp: type, value: Any, key: str, src: str) -> Any:
    ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise key_error(src, key, f"must be {_TYPE_NAMES.get(tp, tp.__name__)}, "
                                  f"got {type(value).__name__} {value!r}")
    return value


def _unknown_key(src: str, key: str, section: str, valid: list[str]) -> ProfileError:
    where = f"in section '{section}'" if section else "at the top level"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
    return ProfileError(f"{src}: unknown key '{key}' {where} ({hint})")


def build(cls: type[_D], data: Any, section: str, src: str) -> _D:
    """Build dataclass `cls` from a mapping, rejecting unknown, missing and mistyped keys."""
    if not isinstance(data, dict):
        what = f"section '{section}'" if section else "the profile"
        raise ProfileError(f"{src}: {what} must be a mapping, got {type(data).__name__}")
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    valid = [f.name for f in fields]
    for key in data:
        if key not in valid:
            raise _unknown_key(src, str(key), section, valid)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        key = f"{section}.{f.name}" if section else f.name
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], key, src)
            _check_range(f, kwargs[f.name], key, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProfileError(f"{src}: missing required key '{key}'")
    return cls(**kwargs)


def _check_range(f: dataclasses.Field[Any], value: Any, key: str, src: str) -> None:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        limits = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise key_error(src, key, f"must be {limits}, got {value!r}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Hashable, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


def parse_yaml(text: str, src: str) -> Any:
    """Parse YAML safely, rejecting duplicate keys; errors name `src` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProfileError(f"{src}: invalid YAML: {exc.problem}{where}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{src}: invalid YAML: {' '.join(str(exc).split())}") from None


class _ReadableDumper(yaml.SafeDumper):
    """Block mappings, but lists of scalars on one line: [fp16, int8]."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    flat = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_ReadableDumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    """YAML text for plain data, keeping key order."""
    return yaml.dump(data, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True)
