"""Detector: frame in, Detections out; preprocess -> Runtime.infer -> decode + NMS -> rescale."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.decode import DecodeConfig, decode, infer_layout, pixel_boxes
from edge_sdk.detections import Detections
from edge_sdk.letterbox import InputBuffer, Letterbox, preprocess
from edge_sdk.meta import ModelMeta
from runtimes import Precision, Runtime, RuntimeOptions, TensorSpec, load
from runtimes.errors import InputError, LayoutError, ModelLoadError
from runtimes.precision import parse_precision


class Detector:
    """A YOLO-family detector on any backend. Call it on a BGR uint8 frame.

    `precision`: None runs the model as it is stored; a name (fp32, fp16, bf16, int8, mixed) is checked:
    the backend runs it or raises PrecisionUnsupportedError (runtimes.precision). `precision_used` says
    what runs. `threads` above the cores this process may use is allowed, with a ThreadsWarning
    (edge_sdk.host).
    """

    def __init__(self, model_path: str | Path, backend: str | None = None, conf: float = 0.25,
                 iou: float = 0.7, max_det: int = 300, multi_label: bool = False,
                 threads: int | None = None, precision: str | Precision | None = None, clip: bool = True,
                 runtime_options: dict[str, Any] | None = None) -> None:
        opts = RuntimeOptions(threads=threads, precision=parse_precision(precision),
                              extra=dict(runtime_options or {}))
        from edge_sdk.host import warn_excess_threads

        warn_excess_threads(threads)  # ThreadsWarning at the caller's line: more threads than cores
        self.runtime: Runtime = load(model_path, backend, opts)
        self.config = DecodeConfig(conf=conf, iou=iou, max_det=max_det, multi_label=multi_label)
        self.clip = clip
        self._input = self._check_input()
        self.meta = ModelMeta.from_props(self.runtime.metadata(), self._input.shape)
        if self.meta.imgsz is None:
            raise ModelLoadError(f"model '{model_path}' has a dynamic input size and no 'imgsz' metadata")
        self._layout_nhwc = self._input.shape[-1] == 3 and self._input.shape[1] != 3
        self.layout = self._resolve_layout()
        self._buffer = InputBuffer()
        self._buffer_lock = threading.Lock()

    def _check_input(self) -> TensorSpec:
        specs = self.runtime.inputs
        if len(specs) != 1:
            raise InputError(f"a detector model takes one image input, this one takes {len(specs)}")
        spec = specs[0]
        if spec.rank != 4:
            raise InputError(f"model input '{spec.name}' must be rank 4 (N, C, H, W), got {tuple(spec.shape)}")
        return spec

    def _resolve_layout(self) -> str:
        if self.meta.layout:
            return self.meta.layout
        shape = self.runtime.outputs[0].shape
        if all(isinstance(d, int) and d > 0 for d in shape):
            return infer_layout(tuple(shape), self.meta.nc)  # type: ignore[arg-type]
        probe = np.zeros(self.input_shape, self._input.dtype)
        return infer_layout(tuple(self.runtime.infer(probe)[0].shape), self.meta.nc)

    @property
    def precision_used(self) -> Precision:
        """The precision the backend runs (from the engine or the artifact, never the request)."""
        return self.runtime.precision_used

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width)."""
        return self.meta.imgsz  # type: ignore[return-value]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        h, w = self.input_size
        return (1, h, w, 3) if self._layout_nhwc else (1, 3, h, w)

    @property
    def names(self) -> dict[int, str]:
        return self.meta.names

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """BGR frame -> model input tensor and the letterbox geometry."""
        return preprocess(frame, self.input_size, self._input.dtype, "nhwc" if self._layout_nhwc else "nchw")

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw model outputs for an input tensor."""
        return self.runtime.infer(tensor)

    def postprocess(self, outputs: list[np.ndarray], lb: Letterbox,
                    config: DecodeConfig | None = None) -> Detections:
        """Decode, NMS and rescale one image's outputs to original-image pixels."""
        if not outputs:
            raise LayoutError("model returned no outputs")
        raw = pixel_boxes(outputs[0], self.layout, self.meta.extra, self.input_size)
        xyxy, scores, cls = decode(raw, self.layout, config or self.config)[0]
        return Detections(lb.to_original(xyxy, clip=self.clip), scores, cls, self.names, lb.image_size)

    def __call__(self, frame: np.ndarray, config: DecodeConfig | None = None) -> Detections:
        # A call that does not overlap another one reuses the input tensor (its pad border stays
        # written across frames of one size); a concurrent call gets a fresh tensor.
        if not self._buffer_lock.acquire(blocking=False):
            tensor, lb = self.preprocess(frame)
            return self.postprocess(self.infer(tensor), lb, config)
        try:
            tensor, lb = preprocess(frame, self.input_size, self._input.dtype,
                                    "nhwc" if self._layout_nhwc else "nchw", buffer=self._buffer)
            return self.postprocess(self.infer(tensor), lb, config)
        finally:
            self._buffer_lock.release()

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
