"""The rows compare works on: one `Entry` per report row, labelled, tied to its report's model and data
set, and given the baseline its deltas are measured against.

Identity: a row belongs to its report's model (`model.sha256`) and data set (`data.sha256`, else its
path). Without --baseline a row's baseline is the trusted fp32 row of the same backend *of the same
model and data set* (preferring the same report and input size), so no delta crosses models. With
--baseline the named row is every row's baseline, across reports; when the reports hold more than one
model or data set the name must pick rows of one of them (a row label such as
`a/report.json: onnxruntime/fp32@640` always does).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report.rows import HOST_PROXY, BudgetCheck, Report, ResultRow
from runtimes.errors import ReportError

__all__ = ["Entry", "Identity", "entries_of", "assign_baselines", "parse_baseline"]


@dataclass(frozen=True)
class Identity:
    """Which model and data set a report measured (None: the report does not say)."""

    model: str | None
    data: str | None
    model_name: str = ""

    @classmethod
    def of(cls, report: Report) -> Identity:
        """The identity of a report: hashes, else the data set's path."""
        data = report.data.sha256 or (f"path:{report.data.path}" if report.data.path else None)
        name = Path(report.model.path).name if report.model.path else "?"
        return cls(report.model.sha256, data, name)

    @property
    def text(self) -> str:
        """'model.onnx (sha256 1a2b3c4d5e6f)', or the name alone when the report has no hash."""
        return f"{self.model_name} (sha256 {self.model[:12]})" if self.model else self.model_name

    def same(self, other: Identity) -> bool:
        """Same model and data set (a missing hash matches only a missing hash)."""
        return (self.model, self.data) == (other.model, other.data)


@dataclass(eq=False)
class Entry:
    """One row of one report, as compare sees it."""

    label: str
    report: int
    row: ResultRow
    identity: Identity = field(default_factory=lambda: Identity(None, None))
    baseline: Entry | None = None
    note: str = ""
    metrics: Any = None  # bench.report.compare.Metrics, set when the row is rendered
    checks: list[BudgetCheck] = field(default_factory=list)
    pareto: bool | None = None
    rejected: list[dict[str, str]] = field(default_factory=list)
    out: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Trusted: the only rows that may be a baseline or the pick."""
        return self.row.ok

    @property
    def proxy(self) -> bool:
        """Measured on a proxy host (a "proxy" flag, or verified on hardware "host proxy"), not on the profile's
        device."""
        return self.row.proxy or self.row.verified == HOST_PROXY

    @property
    def placed(self) -> bool:
        """On the AP vs p99 plane: an ok row with both figures."""
        return self.ok and self.metrics is not None and self.metrics.AP is not None and self.metrics.p99 is not None


def entries_of(reports: Sequence[tuple[str, Report]]) -> list[Entry]:
    """One entry per row, labelled 'report: backend/precision@size', ' [proxy]' on proxy rows, '#n'
    on duplicates."""
    names = _short_names([n for n, _ in reports])
    entries = []
    for i, (_, report) in enumerate(reports):
        ident = Identity.of(report)
        for row in report.results:
            entries.append(Entry(f"{names[i]}: {row.config}", i, row, ident))
    for e in entries:
        if e.proxy:
            e.label += " [proxy]"
    seen, counts = Counter(e.label for e in entries), Counter[str]()
    for e in entries:
        if seen[e.label] > 1:
            counts[e.label] += 1
            e.label = f"{e.label} #{counts[e.label]}"
    return entries


def _short_names(paths: list[str]) -> list[str]:
    """The shortest trailing parts of each path that tell the reports apart (a/report.json)."""
    if not paths:
        return []
    parts = [Path(p).parts or (p,) for p in paths]
    for k in range(1, max(len(x) for x in parts) + 1):
        names = ["/".join(x[-k:]) for x in parts]
        if len(set(names)) == len(names):
            return names
    return list(paths)


def assign_baselines(entries: list[Entry], spec: str | None) -> None:
    """Set each measured entry's baseline and the note saying how it was chosen."""
    if spec:
        _named_baseline(entries, spec)
        return
    mixed = len({(e.identity.model, e.identity.data) for e in entries}) > 1
    for e in entries:
        if not e.row.measured:
            continue
        pool = [c for c in entries if c.ok and c.row.backend == e.row.backend and c.row.precision == "fp32"
                and c.identity.same(e.identity)]
        e.baseline = e if e in pool else _nearest(e, pool)
        what = " of this model and data set" if mixed else ""
        e.note = ("fp32 row of the same backend" + what if e.baseline
                  else f"no baseline: no ok fp32 row of backend {e.row.backend}{what}")


def _named_baseline(entries: list[Entry], spec: str) -> None:
    pool = [c for c in entries if c.ok and c.label == spec]
    if not pool:
        backend, precision, size = parse_baseline(spec)
        pool = [c for c in entries if c.ok and c.row.backend == backend  # int8 matches int8-ptq and int8-qat
                and precision in (c.row.precision, c.row.precision_label) and (size is None or c.row.size_text == size)]
    if not pool:
        raise ReportError(f"--baseline {spec}: no ok row has that backend/precision"
                          f"{'/size' if '@' in spec else ''} or that label (rows: "
                          f"{', '.join(sorted({x.row.config for x in entries}))})")
    if len({(c.identity.model, c.identity.data) for c in pool}) > 1:
        raise ReportError(f"--baseline {spec} matches rows of different models or data sets; name one row: "
                          + "; ".join(c.label for c in pool))
    for e in entries:
        if e.row.measured:
            e.baseline = e if e in pool else _nearest(e, pool)
            e.note = f"--baseline {spec}"


def _nearest(e: Entry, pool: list[Entry]) -> Entry | None:
    """The pool's row closest to `e`: same report first, then same input size."""
    if not pool:
        return None
    return min(pool, key=lambda c: (c.report != e.report, c.row.size_text != e.row.size_text))


def parse_baseline(spec: str) -> tuple[str, str, str | None]:
    """'BACKEND/PRECISION[@IMGSZ]' -> (backend, precision, size or None); ReportError otherwise."""
    head, at, size = spec.partition("@")
    backend, sep, precision = head.partition("/")
    if not sep or not backend or not precision or "/" in precision or (at and not size) or ":" in spec:
        raise ReportError(f"--baseline must be BACKEND/PRECISION[@IMGSZ], e.g. onnxruntime/fp32, or a row "
                          f"label as compare prints it; got '{spec}'")
    return backend, precision, size or None
