"""Precision as a checked type: what a user asks for, and what an engine reports it runs.

The rule (the same for every backend): a precision *request* is a contract. A runtime opened with
an explicit precision either runs it, or raises PrecisionUnsupportedError (one line: what was asked,
what this artifact / engine / CPU runs instead, and how to get the asked one). A request of None
means "as the artifact is". `precision_used` always comes from the engine or the artifact, never
from the request; where neither can tell, it is UNKNOWN and the request is not checked.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from runtimes.errors import EdgebenchError


class PrecisionError(EdgebenchError):
    """A precision name that is not one of Precision's values."""


class PrecisionUnsupportedError(EdgebenchError):
    """An explicit precision request that this artifact, engine or CPU cannot honour."""


class Precision(str, Enum):
    """Numeric precision of a model's compute. MIXED: more than one among the compute layers (typically
    int8 with some layers kept in float)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    MIXED = "mixed"
    UNKNOWN = "unknown"  # only reported (the engine cannot tell), never requested

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_float(self) -> bool:
        """fp32, fp16 or bf16."""
        return self in FLOATS

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        """A requested precision from its name (case-insensitive); PrecisionError listing the valid ones."""
        name = str(value).strip().lower()
        for member in REQUESTABLE:
            if member.value == name:
                return member
        valid = ", ".join(p.value for p in REQUESTABLE)
        raise PrecisionError(f"unknown precision '{value}' (valid: {valid})")


REQUESTABLE = (Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8, Precision.MIXED)
FLOATS = frozenset({Precision.FP32, Precision.FP16, Precision.BF16})


def parse_precision(value: str | Precision | None) -> Precision | None:
    """None stays None ("as the artifact is"); anything else is checked by Precision.parse."""
    return None if value is None else Precision.parse(value)


def parse_precisions(values: str | Iterable[str | Precision]) -> tuple[Precision, ...]:
    """A comma list or an iterable of names -> checked precisions, in order, without repeats."""
    items = values.split(",") if isinstance(values, str) else list(values)
    out: list[Precision] = []
    for item in items:
        if str(item).strip():
            p = Precision.parse(item)
            if p not in out:
                out.append(p)
    return tuple(out)


def satisfies(used: Precision, asked: Precision | None) -> bool:
    """True when running at `used` honours the request `asked` (None and UNKNOWN are not checked;
    an int8 request is met by a mixed model, which is int8 with float-kept layers)."""
    if asked is None or used is Precision.UNKNOWN:
        return True
    return used is asked or (asked is Precision.INT8 and used is Precision.MIXED)


def check_request(backend: str, used: Precision, asked: Precision | None, why: str = "") -> None:
    """PrecisionUnsupportedError when `used` does not honour `asked` (see `satisfies`)."""
    if not satisfies(used, asked):
        reason = f": {why}" if why else ""
        raise PrecisionUnsupportedError(f"{backend} cannot run this model at {asked}; it runs {used}{reason}")


def from_counts(float_kinds: Iterable[Precision], quantized: int, total: int) -> Precision:
    """The precision of a model from its compute layers: the float kinds seen in the non-quantized ones,
    and how many of `total` are quantized (all: INT8; some: MIXED; none: the one float kind)."""
    kinds = set(float_kinds)
    if total and quantized >= total:
        return Precision.INT8
    if quantized:
        return Precision.MIXED
    if len(kinds) == 1:
        return kinds.pop()
    return Precision.UNKNOWN if not kinds else Precision.MIXED


@dataclass(frozen=True)
class LayerTally:
    """A model's compute layers as the engine runs them: how many are quantized, of how many, and the
    precision that makes (`from_counts`)."""

    precision: Precision
    quantized: int
    total: int

    @property
    def integer_fraction(self) -> float | None:
        """Quantized compute layers / all compute layers (None when there are none)."""
        return self.quantized / self.total if self.total else None

    def to_dict(self) -> dict[str, object]:
        return {"precision": self.precision.value, "quantized_layers": self.quantized, "compute_layers": self.total,
                "integer_fraction": self.integer_fraction}


def tally(layers: Iterable[Precision]) -> LayerTally:
    """One precision per compute layer (INT8 for a quantized layer, its float kind, or UNKNOWN when that
    layer cannot tell: it counts in the total but names no float kind) -> the tally."""
    kinds = list(layers)
    quantized = sum(k is Precision.INT8 for k in kinds)
    return LayerTally(from_counts({k for k in kinds if k.is_float}, quantized, len(kinds)), quantized, len(kinds))


def from_layers(layers: Iterable[Precision]) -> Precision:
    """The precision of `tally(layers)`."""
    return tally(layers).precision
