"""Data-driven scaling of the YOLOv8 fixture's random weights (LSUV) and the synthetic test frame.

Random He-normal weights alone let activations drift over ~60 conv layers. LSUV (Mishkin & Matas,
"All you need is a good init") scales each conv, in graph order, so that its output has a target
std on a sample input. The calibration graph does that in one forward pass on a seeded synthetic
frame letterboxed to the model size; each scale is rounded to a step of 2**(1/32).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from testkit.graph import GraphBuilder, float_input
from testkit.yolov8 import Yolov8Builder


def synthetic_frame(height: int = 720, width: int = 1280, seed: int = 0) -> np.ndarray:
    """A seeded BGR uint8 test frame: a gradient background, filled shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([xs / width * 200 + 30, ys / height * 180 + 40,
                      (xs + ys) / (width + height) * 160 + 50], -1).astype(np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(height, width) // 20, min(height, width) // 4))
        if rng.random() < 0.5:
            cv2.rectangle(frame, (x, y), (x + size, y + int(size * rng.uniform(0.5, 2))), color, -1)
        else:
            cv2.circle(frame, (x, y), size // 2, color, -1)
    noise = rng.normal(0, 6, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def _calibration_input(imgsz: tuple[int, int]) -> np.ndarray:
    """The 1280x720 synthetic frame letterboxed to imgsz (pad 114), RGB, [0, 1], NCHW."""
    frame = synthetic_frame()
    scale = min(imgsz[0] / frame.shape[0], imgsz[1] / frame.shape[1])
    w, h = round(frame.shape[1] * scale), round(frame.shape[0] * scale)
    canvas = np.full((*imgsz, 3), 114, np.uint8)
    top, left = (imgsz[0] - h) // 2, (imgsz[1] - w) // 2
    canvas[top:top + h, left:left + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def fit_scales(nc: int, width: float, depth: float, seed: int, imgsz: tuple[int, int]) -> dict[str, float]:
    """Per-layer weight scales that give every conv output its target std on the letterboxed frame."""
    import onnxruntime as ort

    g = GraphBuilder()
    b = Yolov8Builder(g, np.random.default_rng(seed), calibrate=True)
    b.detect(b.backbone_neck("images", width, depth), nc, imgsz)
    names = [p.scale for p in b.probes]
    model = g.model([float_input("images", [1, 3, *imgsz])], [float_input(n, []) for n in names], {}, "yolov8_lsuv")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    values = sess.run(names, {"images": _calibration_input(imgsz)})
    return {p.layer: float(v) for p, v in zip(b.probes, values, strict=False)}
