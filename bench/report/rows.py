"""Typed result rows and reports (schema_version 1), with their one serializer (bench.report.records).

`Report.to_dict()` gives the JSON document `bench.report.writer` writes, key for key what the
dict-based version wrote; `Report.from_dict()` reads it back (also reports written before the
optional row keys existed). Keys these classes do not know are kept in each record's `extra`.

Precision fields (`precision`, `precision_used`) stay strings in JSON; runtimes.precision.Precision
values (a str Enum) may be stored in them as they are.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.report.records import LatencyStats, Record
from bench.report.sustained_rows import SustainedSection

__all__ = [
    "SCHEMA_VERSION", "TOOL", "REPORT_KEYS", "RESULT_KEYS", "OPTIONAL_RESULT_KEYS", "REPORT_STATUSES",
    "ROW_STATUSES", "STAGES", "LatencyStats", "Latency", "Memory", "Accuracy", "Parity", "Delegation",
    "BudgetCheck", "ReferenceCheck", "Samples", "Flag", "FLAG_KINDS", "Stability", "Layers", "Quantization",
    "ArtifactCheck", "VERIFIED", "DEVICE", "HOST_PROXY", "NOT_MEASURABLE", "EMULATED", "PTQ", "QAT", "ROUTES",
    "ResultRow", "ModelInfo",
    "DataInfo", "Settings", "SweepInfo", "Report",
]

SCHEMA_VERSION = 1
TOOL = "edgebench"
REPORT_KEYS = (
    "schema_version", "tool", "tool_version", "created_utc", "command", "status", "profile",
    "host_matches_profile", "host_note", "environment", "model", "data", "settings", "results",
)
RESULT_KEYS = (
    "backend", "precision", "precision_used", "threads", "imgsz", "status", "error",
    "latency_ms", "fps", "memory", "accuracy", "budget_checks", "reference_check", "parity",
    "agreement", "delegation", "verified",
)
#: Row keys added after schema 1 was first written: always written, not required to load.
OPTIONAL_RESULT_KEYS = ("budget_checks", "reference_check", "parity", "agreement", "delegation", "verified")
REPORT_STATUSES = ("complete", "partial")
#: "suspect": measured, but a sanity gate says the numbers must not be trusted (see ResultRow.flags)
ROW_STATUSES = ("ok", "suspect", "skipped", "failed")
#: kinds of row flags: suspect makes the row's status "suspect"; noisy and proxy qualify an ok row
FLAG_KINDS = ("suspect", "noisy", "proxy")
#: What hardware a row's figures were verified on (`ResultRow.verified`, bench.sweep.hardware.verified_for):
#: the profile's own device kind; this host standing in for it; or nothing, because this host cannot run the
#: backend at all (Core ML prediction off macOS, TensorRT without an NVIDIA GPU). Rows of reports written
#: before the field existed have None ("not recorded").
DEVICE, HOST_PROXY, NOT_MEASURABLE = "device", "host proxy", "not measurable"
#: run on the profile's CPU architecture under emulation (bench.emulate, qemu user mode; the row's "emulation"
#: key says which): the ARM kernels' accuracy and parity are valid, its timings are not (and are left out)
EMULATED = "emulated"
VERIFIED = (DEVICE, HOST_PROXY, NOT_MEASURABLE, EMULATED)
#: Latency stages of a row, in order ("total" spans the whole iteration).
STAGES = ("preprocess", "inference", "postprocess", "total")
#: How an int8 row's artifact was made (`Quantization.route`): calibrated by our PTQ route (converters.int8), or
#: quantization-aware trained (`edgebench qat`: the model carried QAT metadata)
PTQ, QAT = "ptq", "qat"
ROUTES = (PTQ, QAT)
#: asked precisions a route is shown with ("int8-ptq", "int8-qat")
_QUANTIZED = ("int8", "mixed")


@dataclass
class Latency(Record):
    """Per-stage latency of a row (a stage that was not recorded is left out)."""

    preprocess: LatencyStats | None = None
    inference: LatencyStats | None = None
    postprocess: LatencyStats | None = None
    total: LatencyStats | None = None

    OMIT_IF_NONE = frozenset(STAGES)
    NESTED = {s: LatencyStats for s in STAGES}

    def stages(self) -> Iterator[tuple[str, LatencyStats | None]]:
        """(stage name, stats or None) in STAGES order."""
        yield from zip(STAGES, (self.preprocess, self.inference, self.postprocess, self.total), strict=True)

    def inference_parts(self) -> dict[str, LatencyStats]:
        """The parts of inference a runtime timed itself ("inference.h2d", ...: TensorRT's CUDA events),
        kept as extra keys of the record."""
        return {k.split(".", 1)[1]: LatencyStats.from_dict(v) for k, v in self.extra.items()
                if k.startswith("inference.") and isinstance(v, dict)}


@dataclass
class Memory(Record):
    """Memory of a configuration in MiB (RSS after load, sampled and OS peaks, model size)."""

    rss_after_load_mb: float | None = None
    peak_rss_mb: float | None = None
    peak_rss_os_mb: float | None = None
    model_size_mb: float | None = None


@dataclass
class Accuracy(Record):
    """COCO stats, P/R/F1 at the deploy confidence and per-class AP50-95 of a row. As a row's
    `agreement` it also has kind "agreement" and the reference's label."""

    AP: float | None = None
    AP50: float | None = None
    AP75: float | None = None
    APs: float | None = None
    APm: float | None = None
    APl: float | None = None
    AR1: float | None = None
    AR10: float | None = None
    AR100: float | None = None
    ARs: float | None = None
    ARm: float | None = None
    ARl: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    conf: float | None = None
    per_class_ap: dict[str, float] | None = None
    engine: str | None = None
    num_detections: int | None = None
    num_images: int | None = None
    kind: str | None = None
    reference: str | None = None
    # validation views at IoU 0.5 (edge_sdk.curves.views): best-F1 threshold, compact PR/F1 curves, confusion
    best_f1_conf: float | None = None
    best_f1: float | None = None
    curves: dict[str, Any] | None = None
    confusion: dict[str, Any] | None = None

    OMIT_IF_NONE = frozenset({"kind", "reference", "best_f1_conf", "best_f1", "curves", "confusion"})


@dataclass
class Parity(Record):
    """converters.parity.ParityResult.to_dict of a converted artifact (missing keys stay missing)."""

    layout: str | None = None
    images: int | None = None
    box_max_abs: float | None = None
    box_mean_abs: float | None = None
    box_cosine: float | None = None
    score_max_abs: float | None = None
    score_mean_abs: float | None = None
    score_cosine: float | None = None
    ref_detections: int | None = None
    cand_detections: int | None = None
    matched: int | None = None
    match_rate: float | None = None
    mean_iou: float | None = None
    class_agreement: float | None = None
    count_diff: int | None = None
    input_size: list[int] | None = None
    tolerance: dict[str, Any] | None = None
    precision_used: str | None = None
    failures: list[str] | None = None
    note: str | None = None
    passed: bool | None = None

    OMIT_IF_NONE = frozenset({
        "layout", "images", "box_max_abs", "box_mean_abs", "box_cosine", "score_max_abs", "score_mean_abs",
        "score_cosine", "ref_detections", "cand_detections", "matched", "match_rate", "mean_iou",
        "class_agreement", "count_diff", "input_size", "tolerance", "precision_used", "failures", "note", "passed"})


@dataclass
class Delegation(Record):
    """A backend's delegate report (TFLite/XNNPACK): ops it took, op types left on CPU kernels."""

    total_ops: int | None = None
    delegated_ops: int | None = None
    partitions: int | None = None
    cpu_ops: dict[str, int] = field(default_factory=dict)
    summary: str | None = None


@dataclass
class BudgetCheck(Record):
    """One budget against one row: status is "pass", "fail" or "unknown"; message is one line."""

    name: str
    limit: float
    value: float | None
    status: str
    message: str


@dataclass
class ReferenceCheck(Record):
    """Is the row's FPS inside the profile's reference range? (see bench.report.budgets)"""

    checked: bool = False
    status: str = "not checked"
    fps: float | None = None
    range: list[float] = field(default_factory=list)
    precision: str | None = None
    reason: str = ""


@dataclass
class Samples(Record):
    """Per-iteration latencies of a row in ms (the total only), thinned for the HTML plots."""

    total: list[float] | None = None

    OMIT_IF_NONE = frozenset({"total"})


_ROW_ONLY_WHEN_SET = ("artifact", "latency_samples_ms", "iterations", "duration_s", "stopped_by",
                      "engine_versions", "flags", "stability", "artifact_sha256", "source_sha256", "layers",
                      "quantization", "artifact_check")


@dataclass
class Layers(Record):
    """The compute layers as the engine runs them (runtimes.precision.LayerTally): how many are
    quantized, of how many; integer_fraction is the integer-op fraction of an int8/mixed row."""

    precision: str | None = None
    quantized_layers: int | None = None
    compute_layers: int | None = None
    integer_fraction: float | None = None


@dataclass
class Quantization(Record):
    """How an int8 artifact was made: the route (PTQ or QAT), and for PTQ (converters.int8) the method, the
    calibration images (source, count, content hash, overlap with the evaluation set), what was kept in float,
    and the quantizer; for QAT the metadata `edgebench qat` wrote (its own keys kept in `extra`). `as_stored`:
    the model given was already quantized and this is its own record, not a quantization made by the run."""

    route: str | None = None  # one of ROUTES; None in reports written before the field (PTQ was the only route)
    as_stored: bool | None = None
    method: str | None = None
    calibration: dict[str, Any] | None = None
    exclusion: dict[str, Any] | None = None
    quantizer: str | None = None
    scheme: str | None = None
    excluded: list[str] | None = None  # in the engine's own names
    float_ops: list[str] | None = None
    int8_io: bool | None = None
    cache_hit: bool | None = None
    notes: list[str] | None = None

    OMIT_IF_NONE = frozenset({"route", "as_stored"})

    @property
    def made_by(self) -> str:
        """The route: `route`, else QAT for a QAT method ("qat", "qat (learned scales)"), else PTQ."""
        if self.route in ROUTES:
            return str(self.route)
        return QAT if str(self.method or "").startswith(QAT) else PTQ

    def summary(self, layers: Layers | None = None) -> str:
        """One line: who quantized how, on what, what stayed float, and the integer-layer fraction."""
        if self.made_by == QAT:
            return self._qat_summary(layers)
        calib = self.calibration or {}
        excl = self.exclusion or {}
        kept = len(excl.get("nodes") or ()) + len(excl.get("added") or ())
        parts = [f"int8 by {self.quantizer or '?'} ({self.scheme or '?'})",
                 f"{self.method or '?'} calibration on {calib.get('images', '?')} images from "
                 f"{calib.get('source', '?')} (sha256 {str(calib.get('sha256') or '-')[:12]})",
                 f"{kept} node(s) kept in float ({excl.get('mode', '?')})"]
        if layers is not None and layers.integer_fraction is not None:
            parts.append(f"{layers.quantized_layers}/{layers.compute_layers} compute layers integer "
                         f"({layers.integer_fraction:.0%})")
        if self.float_ops:
            parts.append(f"ops left in float: {', '.join(self.float_ops[:6])}"
                         + (" ..." if len(self.float_ops) > 6 else ""))
        if calib.get("overlap_with_eval"):
            parts.append(f"CALIBRATED ON {calib['overlap_with_eval']} EVALUATION IMAGE(S) (--allow-calib-overlap)")
        if self.cache_hit:
            parts.append("calibration from cache")
        return "; ".join(parts)

    def _qat_summary(self, layers: Layers | None) -> str:
        """One line of a QAT model: library and target, scheme, the checkpoint it was fine-tuned from, the
        range-initialisation images and what stayed float."""
        x = self.extra
        scheme = self.scheme or ", ".join(f"{k} {x[k]}" for k in ("weights", "activations") if x.get(k))
        target = f", target {x['target']}" if x.get("target") else ""
        who = f"int8 by QAT ({x.get('library') or self.quantizer or '?'}{target})"
        parts = [f"{who}: {scheme}" if scheme else who]
        if x.get("source") or x.get("source_sha256"):
            sha = str(x.get("source_sha256") or "-")[:12]
            parts.append(f"fine-tuned from {x.get('source') or '?'} (sha256 {sha})")
        if x.get("calib_images"):
            parts.append(f"ranges initialised on {x['calib_images']} images")
        if self.float_ops is not None:
            parts.append(f"{len(self.float_ops)} op(s) kept in float")
        if layers is not None and layers.integer_fraction is not None:
            parts.append(f"{layers.quantized_layers}/{layers.compute_layers} compute layers integer "
                         f"({layers.integer_fraction:.0%})")
        if self.as_stored:
            parts.append("the model as given (already quantized)")
        return "; ".join(parts)


@dataclass
class ArtifactCheck(Record):
    """What was checked of an artifact this host converted but cannot run (a `converters.<x>` inspector, e.g.
    converters.coreml.inspect_mlpackage): its format, size, op counts by type, the compute ops and the
    precision they compute in, weight compression, and why prediction and the device plan are not measurable."""

    format: str | None = None
    size_bytes: int | None = None
    specification_version: int | None = None
    ops: dict[str, int] | None = None  # op type -> count (weight constants included)
    ops_total: int | None = None  # ops that compute (weight constants left out)
    compute_ops: int | None = None
    compute_precision: str | None = None
    weight_compression: dict[str, int] | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    prediction: str | None = None
    compute_plan: str | None = None

    @classmethod
    def of(cls, facts: Mapping[str, Any]) -> ArtifactCheck:
        """The record of an inspector's plain dict (its own keys kept in `extra`, its metadata and path left out)."""
        data = {k: v for k, v in facts.items() if k not in ("metadata", "path")}
        if "type" in data:
            data["format"] = data.pop("type")
        return cls.from_dict(data, "artifact_check")

    def summary(self) -> str:
        """One line: format, size, op count and the most common op types, compute ops and their precision,
        weight compression."""
        size = f"{self.size_bytes / 2**20:.2f} MiB" if isinstance(self.size_bytes, (int, float)) else "size ?"
        kinds = sorted(((n, t) for t, n in (self.ops or {}).items() if t != "const"), reverse=True)
        common = ", ".join(f"{t} {n}" for n, t in kinds[:6]) + (" ..." if len(kinds) > 6 else "")
        squeezed = ", ".join(f"{t} {n}" for t, n in (self.weight_compression or {}).items()) or "none"
        return (f"{self.format or 'artifact'} checked without running it: {size}, {_q(self.ops_total)} ops of "
                f"{len(kinds)} types ({common or '-'}); {_q(self.compute_ops)} compute ops in "
                f"{self.compute_precision or '?'}; weight compression: {squeezed}")


def _q(value: Any) -> str:
    return "?" if value is None else str(value)


@dataclass
class Stability(Record):
    """How steady a row's timed loop and how quiet its host were (bench.measure.noise): window p50s
    and their spread (fraction), 1-min load and steal % before and during the run, logical cores."""

    windows: int | None = None
    window_p50_ms: list[float] | None = None
    p50_spread: float | None = None
    load_before: float | None = None
    load_during: float | None = None
    cores: int | None = None
    steal_before_pct: float | None = None
    steal_during_pct: float | None = None
    host_source: str | None = None


@dataclass
class Flag(Record):
    """Why a measured row's numbers need care: kind (FLAG_KINDS) and a one-line reason with its figures."""

    kind: str
    reason: str

    @property
    def text(self) -> str:
        """'kind: reason'."""
        return f"{self.kind}: {self.reason}"


@dataclass
class ResultRow(Record):
    """One configuration (backend x precision x input size): status "ok" | "skipped" | "failed"."""

    backend: str
    precision: str
    precision_used: str | None = None
    threads: int | None = None
    imgsz: list[int] | int | None = None
    status: str = "ok"
    error: str | None = None
    latency_ms: Latency | None = None
    fps: float | None = None
    memory: Memory | None = None
    accuracy: Accuracy | None = None
    budget_checks: list[BudgetCheck] | None = None
    reference_check: ReferenceCheck | None = None
    parity: Parity | None = None
    agreement: Accuracy | None = None
    delegation: Delegation | None = None
    verified: str | None = None  # one of VERIFIED: what hardware the figures were verified on (None: not recorded)
    # measured rows only (written after the keys above, and only when set)
    artifact: str | None = None
    latency_samples_ms: Samples | None = None
    iterations: int | None = None
    duration_s: float | None = None
    stopped_by: str | None = None
    engine_versions: dict[str, str] | None = None
    flags: list[Flag] | None = None
    stability: Stability | None = None
    artifact_sha256: str | None = None  # the file(s) measured (bench.sweep.inputs.artifact_sha256)
    source_sha256: str | None = None  # the model it was converted from, when it was converted
    layers: Layers | None = None  # compute layers quantized / total, from the engine
    quantization: Quantization | None = None  # int8 rows: calibration provenance, method, exclusions
    artifact_check: ArtifactCheck | None = None  # a converted artifact this host cannot run: what was checked

    OMIT_IF_NONE = frozenset(_ROW_ONLY_WHEN_SET)
    NESTED = {"latency_ms": Latency, "memory": Memory, "accuracy": Accuracy, "budget_checks": BudgetCheck,
              "reference_check": ReferenceCheck, "parity": Parity, "agreement": Accuracy,
              "delegation": Delegation, "latency_samples_ms": Samples, "flags": Flag,
              "stability": Stability, "layers": Layers, "quantization": Quantization,
              "artifact_check": ArtifactCheck}

    @property
    def ok(self) -> bool:
        """Measured and trusted: the only rows compare may recommend."""
        return self.status == "ok"

    @property
    def measured(self) -> bool:
        """Measured, trusted or not (ok or suspect): its numbers can be shown."""
        return self.status in ("ok", "suspect")

    def add_flag(self, kind: str, reason: str) -> None:
        """Attach a flag; a suspect flag turns an ok row into a suspect one."""
        if kind not in FLAG_KINDS:
            raise ValueError(f"unknown flag kind '{kind}' (known: {', '.join(FLAG_KINDS)})")
        self.flags = [*(self.flags or []), Flag(kind, reason)]
        if kind == "suspect" and self.status == "ok":
            self.status = "suspect"

    @property
    def proxy(self) -> bool:
        """Measured on a proxy host (a "proxy" flag), not on the profile's device."""
        return any(f.kind == "proxy" for f in self.flags or ())

    def flag_texts(self, kind: str | None = None) -> list[str]:
        """'kind: reason' of the row's flags (of one kind when given)."""
        return [f.text for f in self.flags or () if kind is None or f.kind == kind]

    @property
    def verified_text(self) -> str:
        """The `verified` value, or "not recorded" (a report written before the field existed)."""
        return str(self.verified) if self.verified else "not recorded"

    @property
    def total(self) -> LatencyStats | None:
        """Latency stats of the whole iteration, or None."""
        return self.latency_ms.total if self.latency_ms else None

    @property
    def quant_route(self) -> str | None:
        """How the row's int8 artifact was made: PTQ ("ptq") or QAT ("qat"); None without a quantization
        record (not quantized, or a quantized model of unknown origin)."""
        return self.quantization.made_by if self.quantization is not None else None

    @property
    def precision_label(self) -> str:
        """The asked precision, with the route on an int8 row: 'int8-ptq', 'int8-qat' (the one display helper)."""
        asked = str(getattr(self.precision, "value", self.precision) or "?")
        route = self.quant_route
        return f"{asked}-{route}" if route and asked in _QUANTIZED else asked

    @property
    def precision_text(self) -> str:
        """'asked/used' ('asked' alone when the used precision is unknown); asked is `precision_label`."""
        asked = self.precision_label
        used = getattr(self.precision_used, "value", self.precision_used)
        return f"{asked}/{used}" if used else asked

    @property
    def size_text(self) -> str:
        """The input size: '640' for a square [640, 640], '480x640' otherwise, '' when unknown."""
        size = self.imgsz
        if isinstance(size, (list, tuple)):
            if not size:
                return ""
            return str(size[0]) if len(set(size)) == 1 else "x".join(str(v) for v in size)
        return "" if size is None else str(size)

    @property
    def config(self) -> str:
        """backend/precision@size (without '@size' when the size is unknown), precision as `precision_label`."""
        size = self.size_text
        return f"{self.backend}/{self.precision_label}" + (f"@{size}" if size else "")


@dataclass
class ModelInfo(Record):
    """The measured model: path, sha256, size in MiB and its metadata."""

    path: str | None = None
    sha256: str | None = None
    size_mb: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataInfo(Record):
    """The evaluation data set: path, number of images and the label issues skipped; the number
    of images scored and the content hash of those images and their labels (bench.sweep.inputs)."""

    path: str | None = None
    images: int = 0
    label_issues: list[str] = field(default_factory=list)
    scored_images: int | None = None
    sha256: str | None = None

    OMIT_IF_NONE = frozenset({"scored_images", "sha256"})


@dataclass
class Settings(Record):
    """How every configuration was measured and scored."""

    warmup: int | None = None
    min_iterations: int | None = None
    min_duration_s: float | None = None
    percentile_method: str | None = None
    deploy: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = field(default_factory=dict)
    max_eval_images: int | None = None
    reference: dict[str, Any] | None = None  # bench.sweep.agreement.Reference.to_dict + "boxes"
    class_map: dict[str, Any] | None = None  # --class-map: bench.sweep.class_map.ClassMap.to_dict

    OMIT_IF_NONE = frozenset({"reference", "class_map"})


@dataclass
class SweepInfo(Record):
    """What a sweep planned, and whether Ctrl-C stopped it."""

    configurations: int = 0
    interrupted: bool = False


@dataclass
class Report(Record):
    """A benchmark report: header, environment, model, data, settings and one row per configuration.
    `profile` and `environment` stay plain mappings (snapshots of edge_sdk.profiles and
    bench.measure.environment)."""

    schema_version: int = SCHEMA_VERSION
    tool: str = TOOL
    tool_version: str = "0+unknown"
    created_utc: str = ""
    command: list[str] = field(default_factory=list)
    status: str = "partial"
    profile: dict[str, Any] = field(default_factory=dict)
    host_matches_profile: bool = False
    host_note: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    model: ModelInfo = field(default_factory=ModelInfo)
    data: DataInfo = field(default_factory=DataInfo)
    settings: Settings = field(default_factory=Settings)
    results: list[ResultRow] = field(default_factory=list)
    notes: list[str] | None = None
    sweep: SweepInfo | None = None
    sustained: SustainedSection | None = None

    OMIT_IF_NONE = frozenset({"notes", "sweep", "sustained"})
    NESTED = {"model": ModelInfo, "data": DataInfo, "settings": Settings, "results": ResultRow,
              "sweep": SweepInfo, "sustained": SustainedSection}

    @property
    def profile_name(self) -> str | None:
        """The profile's name, or None."""
        name = self.profile.get("name") if isinstance(self.profile, Mapping) else None
        return str(name) if name else None

    @property
    def ok_rows(self) -> list[ResultRow]:
        """The rows that measured."""
        return [r for r in self.results if r.ok]
