"""Export one of our checkpoints (its EMA weights) to ONNX with edgebench metadata inside."""
from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from converters.fp16_storage import store_weights_fp16
from edge_sdk.meta import ModelMeta
from runtimes.errors import ModelLoadError
from trainer.checkpoint import LoadedModel, load_detector

INPUT_NAME, OUTPUT_NAME = "images", "output0"


def model_meta(loaded: LoadedModel, imgsz: int, extra: dict[str, Any] | None = None) -> ModelMeta:
    """The metadata an exported artifact carries: names, input size, stride, layout, source hash,
    plus any `extra` entries (e.g. how its training data was made)."""
    info = {"producer": "edgebench.trainer", "model": loaded.model.config.to_dict(), "checkpoint": loaded.path.name}
    return ModelMeta(names=dict(loaded.names), imgsz=(imgsz, imgsz), stride=loaded.model.stride,
                     layout="yolov8", precision="fp32", source_hash=loaded.sha256, extra=info | dict(extra or {}))


def _torch_export(model: torch.nn.Module, path: Path, imgsz: int, opset: int, dynamic_batch: bool) -> None:
    dummy = torch.zeros(1, 3, imgsz, imgsz)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(model, (dummy,), str(path), opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
                          dynamo=False)


def slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim's graph simplification when it is installed, else the model unchanged."""
    if importlib.util.find_spec("onnxslim") is None:
        return model
    import onnxslim

    return onnxslim.slim(model)


def export_onnx(ckpt: str | Path, out: str | Path, imgsz: int | None = None, opset: int = 17,
                dynamic_batch: bool = False, simplify: bool = True, weights_fp16: bool = False,
                extra: dict[str, Any] | None = None) -> Path:
    """Checkpoint -> ONNX ([B, 3, H, W] RGB 0..1 in, [B, 4+nc, N] out) with ModelMeta in metadata_props.

    `weights_fp16` stores the weights as float16 (half the file; compute stays float32).
    """
    loaded = load_detector(ckpt)
    size = int(imgsz or loaded.imgsz)
    if size % loaded.model.stride:
        raise ModelLoadError(f"export size {size} must be a multiple of the model stride {loaded.model.stride}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(loaded.model.eval(), raw, size, opset, dynamic_batch)
        proto = onnx.load(str(raw))
    if simplify:
        proto = slim(proto)
    if weights_fp16:
        proto = store_weights_fp16(proto)
        extra = {"weights_storage": "fp16"} | dict(extra or {})
    return save_with_meta(proto, out, model_meta(loaded, size, extra))


def save_with_meta(proto: onnx.ModelProto, out: Path, meta: ModelMeta) -> Path:
    """Replace `proto`'s metadata by `meta`, check it, and write it to `out` atomically."""
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "edgebench"
    onnx.checker.check_model(proto)
    tmp_out = out.with_name(out.name + ".tmp")
    onnx.save(proto, str(tmp_out))
    os.replace(tmp_out, out)
    return out
