"""ONNX fixture models built with numpy + onnx only: constant-output layout models and a YOLOv8-sized net.

- `make_layout_model`: a tiny graph whose single output is exactly a given array (in one of the three
  detection layouts) while still depending on the input, for exact decode/NMS tests.
- `make_yolov8_onnx`: a YOLOv8-architecture graph with seeded random weights, the size of a
  YOLOv8n at width 0.25 / depth 0.33, for benchmarks and backend conformance tests.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edge_sdk.meta import ModelMeta
from testkit.graph import GraphBuilder, count_learned, float_input
from testkit.lsuv import fit_scales, synthetic_frame
from testkit.yolov8 import STRIDES, Yolov8Builder

__all__ = ["make_layout_model", "make_yolov8_onnx", "parameter_count", "synthetic_frame"]

LAYOUTS = ("yolov8", "yolov5", "end2end")
META_STYLES = ("ultralytics", "edgebench", None)
INPUT_NAME, OUTPUT_NAME = "images", "output0"


def layout_nc(layout: str, shape: tuple[int, ...]) -> int | None:
    """Classes implied by an output shape in a layout (None for end2end); ValueError if it does not fit."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f"layout output must be [1, ., .], got shape {tuple(shape)}")
    if layout == "yolov8" and shape[1] >= 5:
        return shape[1] - 4
    if layout == "yolov5" and shape[2] >= 6:
        return shape[2] - 5
    if layout == "end2end" and shape[2] == 6:
        return None
    raise ValueError(f"shape {tuple(shape)} does not fit layout {layout!r}")


def fixture_props(meta: str | None, names: Mapping[int, str], imgsz: tuple[int, int],
                  layout: str | None = None) -> dict[str, str]:
    """Metadata props: Ultralytics' keys, ours (ModelMeta.to_props) or none."""
    if meta is None:
        return {}
    if meta == "edgebench":
        return ModelMeta(names=dict(names), imgsz=imgsz, stride=max(STRIDES), layout=layout).to_props()
    if meta == "ultralytics":
        props = {"names": repr(dict(names)), "imgsz": repr(list(imgsz)),
                 "stride": str(max(STRIDES)), "task": "detect", "batch": "1"}
        if layout == "end2end":
            props["end2end"] = "True"
        return props
    raise ValueError(f"meta must be one of {META_STYLES}, got {meta!r}")


def make_layout_model(path: str | Path, layout: str, output: np.ndarray, input_hw: tuple[int, int] = (320, 320),
                      names: Mapping[int, str] | None = None, meta: str | None = "ultralytics",
                      input_shape: tuple[int, ...] | None = None) -> Path:
    """Write an ONNX model: images [1,3,H,W] -> output0 == `output` (float32), with metadata.

    The output is Add(output, Mul(ReduceMean(images), 0)), so it depends on the input but equals
    the constant. `input_shape` overrides the input shape (to build deliberately wrong models).
    """
    out = np.ascontiguousarray(output, np.float32)
    nc = layout_nc(layout, out.shape)
    if names is None:
        names = {i: f"class{i}" for i in range(nc if nc is not None else 80)}
    g = GraphBuilder()
    mean = g.node("ReduceMean", [INPUT_NAME], keepdims=0)
    zero = g.node("Mul", [mean, g.const("const.zero", np.array(0.0, np.float32))])
    g.nodes.append(_named_add(g.const("const.output", out), zero))
    shape = list(input_shape) if input_shape is not None else [1, 3, *input_hw]
    model = g.model([float_input(INPUT_NAME, shape)], [float_input(OUTPUT_NAME, list(out.shape))],
                    fixture_props(meta, names, tuple(input_hw), layout), f"layout_{layout}")
    return _save(model, path)


def _named_add(a: str, b: str) -> onnx.NodeProto:
    return helper.make_node("Add", [a, b], [OUTPUT_NAME], name="output_add")


def make_yolov8_onnx(path: str | Path, nc: int = 80, imgsz: int | tuple[int, int] = 640, width: float = 0.25,
                     depth: float = 0.33, seed: int = 0, names: Mapping[int, str] | None = None,
                     dynamic_batch: bool = False) -> Path:
    """Write a YOLOv8-architecture ONNX (random weights, Ultralytics-style metadata): images -> [B, 4+nc, N]."""
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    if hw[0] % max(STRIDES) or hw[1] % max(STRIDES):
        raise ValueError(f"imgsz must be a multiple of {max(STRIDES)}, got {hw}")
    names = dict(names) if names is not None else {i: f"class{i}" for i in range(nc)}
    if len(names) != nc:
        raise ValueError(f"names has {len(names)} entries for nc={nc}")
    g = GraphBuilder()
    b = Yolov8Builder(g, np.random.default_rng(seed), fit_scales(nc, width, depth, seed, hw))
    out = b.detect(b.backbone_neck(INPUT_NAME, width, depth), nc, hw)
    g.nodes.append(_named_identity(out))
    batch: int | str = "batch" if dynamic_batch else 1
    n = sum((hw[0] // s) * (hw[1] // s) for s in STRIDES)
    model = g.model([float_input(INPUT_NAME, [batch, 3, *hw])], [float_input(OUTPUT_NAME, [batch, 4 + nc, n])],
                    fixture_props("ultralytics", names, hw), "yolov8_fixture")
    model.doc_string = f"edgebench YOLOv8 fixture, random weights (seed {seed}), {count_learned(model)} parameters"
    return _save(model, path)


def _named_identity(x: str) -> onnx.NodeProto:
    return helper.make_node("Identity", [x], [OUTPUT_NAME], name="output_identity")


def parameter_count(path: str | Path) -> int:
    """Learned parameters (conv weights and folded-BN biases) of a fixture ONNX file."""
    return count_learned(onnx.load(str(path)))


def _save(model: onnx.ModelProto, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(p))
    return p

