"""The one serializer of typed report records (`Record.to_dict` / `Record.from_dict`).

A record is a dataclass whose fields are its JSON keys, declared in the order they are written.
Values are plain JSON data, records, or lists / dicts of records. Keys a record does not know are
kept in `extra` and written after the known ones, so a report from another edgebench version keeps
what it had. Fields named in `OMIT_IF_NONE` are left out of the JSON while they are None (keys that
only some rows or sections carry) unless the data the record was read from had the key; every other
field is always written, as null when None.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from runtimes.errors import ReportError

__all__ = ["Record", "LatencyStats", "plain"]

R = TypeVar("R", bound="Record")


@dataclasses.dataclass
class Record:
    """Base of every report record: plain-data conversion both ways, unknown keys kept."""

    extra: dict[str, Any] = dataclasses.field(default_factory=dict, kw_only=True, repr=False)

    #: Fields left out of to_dict() while None.
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()
    #: Field -> the record type of its value (or of each item, when the value is a list).
    NESTED: ClassVar[Mapping[str, type[Record]]] = {}
    #: Field -> the record type of each value of a {name: record} mapping.
    NESTED_MAPS: ClassVar[Mapping[str, type[Record]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data, keys in field order, then `extra`."""
        out: dict[str, Any] = {}
        present: frozenset[str] = getattr(self, "_present", frozenset())
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if value is None and name in self.OMIT_IF_NONE and name not in present:
                continue
            out[name] = plain(value)
        for key, value in self.extra.items():
            out.setdefault(key, plain(value))
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any], where: str = "") -> R:
        """The record of plain data (records inside are converted too; ReportError when a value
        that must be an object is not, or a required key is missing)."""
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise ReportError(f"{where} must be an object, got {type(data).__name__}")
        names = _field_names(cls)
        kwargs = {name: _load(cls, name, data[name], f"{where}.{name}") for name in names if name in data}
        extra = {key: value for key, value in data.items() if key not in names}
        try:
            record = cls(**kwargs, extra=extra)
        except TypeError as exc:  # a required field is missing
            raise ReportError(f"{where}: {exc}") from None
        object.__setattr__(record, "_present", frozenset(kwargs))  # keys read: null ones are written back
        return record


@dataclasses.dataclass
class LatencyStats(Record):
    """`bench.measure.timing.summarize` of one stage in ms; `fps` only on the total. Keys that are
    missing stay missing (hand-written rows often carry only p50/p95/p99)."""

    count: int | None = None
    min: float | None = None
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    stdev: float | None = None
    fps: float | None = None

    OMIT_IF_NONE = frozenset({"count", "min", "mean", "p50", "p90", "p95", "p99", "max", "stdev", "fps"})


def plain(value: Any) -> Any:
    """Records (also inside lists, tuples and dicts) as plain dicts; everything else unchanged."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


_NAMES: dict[type[Record], tuple[str, ...]] = {}


def _field_names(cls: type[Record]) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")
    return names


def _load(cls: type[Record], name: str, value: Any, where: str) -> Any:
    """A field's value from plain data: nested records converted, list items that are not
    objects dropped."""
    if value is None:
        return None
    kind = cls.NESTED.get(name)
    if kind is not None:
        if isinstance(value, list):
            return [_one(kind, v, f"{where}[{i}]") for i, v in enumerate(value) if isinstance(v, (Mapping, Record))]
        return _one(kind, value, where)
    kind = cls.NESTED_MAPS.get(name)
    if kind is not None:
        if not isinstance(value, Mapping):
            raise ReportError(f"{where} must be an object, got {type(value).__name__}")
        return {k: _one(kind, v, f"{where}.{k}") for k, v in value.items()}
    return value


def _one(kind: type[Record], value: Any, where: str) -> Record:
    if isinstance(value, kind):
        return value
    return kind.from_dict(value, where)
