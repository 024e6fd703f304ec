"""Reading what converters need from an ONNX file: metadata props and input/output shapes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edge_sdk.errors import ModelLoadError


def dims(value_info: Any) -> list[Any]:
    """A tensor's shape: ints, or None for dynamic dims."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def onnx_io(onnx_path: str | Path) -> tuple[dict[str, str], list[list[Any]], list[list[Any]]]:
    """(metadata_props, the shapes of the real inputs (initializers excluded), the output shapes)."""
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise ModelLoadError(f"cannot read ONNX model '{onnx_path}': {exc}") from exc
    weights = {init.name for init in proto.graph.initializer}
    inputs = [dims(i) for i in proto.graph.input if i.name not in weights]
    return {p.key: p.value for p in proto.metadata_props}, inputs, [dims(o) for o in proto.graph.output]
