"""ModelMeta: class names, input size, stride, head layout, read from an artifact's metadata."""
from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from runtimes.errors import ModelLoadError

#: Key under which edgebench stores its own metadata (a JSON object) in ONNX metadata_props.
EDGEBENCH_KEY = "edgebench"
LAYOUTS = ("yolov8", "yolov5", "end2end")


@dataclass
class ModelMeta:
    """What a detector needs to know about its model besides the weights."""

    names: dict[int, str] = field(default_factory=dict)
    imgsz: tuple[int, int] | None = None  # (height, width)
    stride: int = 32
    task: str = "detect"
    layout: str | None = None  # one of LAYOUTS; None = infer from the output shape
    precision: str = "fp32"
    source_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nc(self) -> int | None:
        """Number of classes, when the names are known."""
        return len(self.names) or None

    def to_props(self) -> dict[str, str]:
        """Metadata props to store in an artifact: ours as JSON plus Ultralytics-style keys."""
        ours = asdict(self)
        ours["names"] = {str(k): v for k, v in self.names.items()}
        return {
            EDGEBENCH_KEY: json.dumps(ours, sort_keys=True),
            "names": repr(dict(self.names)),
            "imgsz": repr(list(self.imgsz)) if self.imgsz else "",
            "stride": str(self.stride),
            "task": self.task,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], input_shape: Sequence[Any] | None = None) -> ModelMeta:
        """Build from metadata props (ours first, then Ultralytics' keys), filling gaps from the input shape."""
        if props.get(EDGEBENCH_KEY):
            meta = _from_ours(props[EDGEBENCH_KEY])
        else:
            meta = _from_ultralytics(props)
        if meta.imgsz is None and input_shape is not None:
            meta.imgsz = _imgsz_from_shape(input_shape)
        if meta.layout is not None and meta.layout not in LAYOUTS:
            raise ModelLoadError(f"metadata layout '{meta.layout}' is not one of {LAYOUTS}")
        return meta


def _from_ours(text: str) -> ModelMeta:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"edgebench metadata is not valid JSON: {exc}") from exc
    known = {f for f in ModelMeta.__dataclass_fields__}
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs["names"] = {int(k): str(v) for k, v in (data.get("names") or {}).items()}
    if kwargs.get("imgsz"):
        kwargs["imgsz"] = _pair(kwargs["imgsz"])
    return ModelMeta(**kwargs)


def _from_ultralytics(props: Mapping[str, str]) -> ModelMeta:
    meta = ModelMeta()
    if props.get("names"):
        meta.names = _parse_names(props["names"])
    if props.get("imgsz"):
        meta.imgsz = _pair(_literal(props["imgsz"], "imgsz"))
    if props.get("stride"):
        meta.stride = int(_literal(props["stride"], "stride"))
    if props.get("task"):
        meta.task = str(props["task"])
    if str(props.get("end2end", "")).lower() == "true":
        meta.layout = "end2end"
    return meta


def _literal(text: str, key: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ModelLoadError(f"cannot parse model metadata '{key}': {text[:80]!r}") from exc


def _parse_names(text: str) -> dict[int, str]:
    value = _literal(text, "names")
    if isinstance(value, (list, tuple)):
        return {i: str(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    raise ModelLoadError(f"model metadata 'names' must be a dict or list, got {type(value).__name__}")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    seq = list(value)
    if len(seq) == 1:
        return (int(seq[0]), int(seq[0]))
    return (int(seq[0]), int(seq[1]))


def _imgsz_from_shape(shape: Sequence[Any]) -> tuple[int, int] | None:
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        if shape[2] > 0 and shape[3] > 0:
            return (int(shape[2]), int(shape[3]))
    return None
