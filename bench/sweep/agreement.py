"""Label-free accuracy ("agreement mAP"): score a configuration against a reference configuration's
own detections (e.g. ONNX Runtime fp32) on the same images, with the usual COCO evaluator.

It measures how closely a quantized or converted model reproduces its reference, not how
accurate either is: a reference that misses an object makes that miss count for nobody.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.sweep.artifacts import ConfigSkipped, resolve_artifact
from edge_sdk.coco_eval import restrict_to_images
from edge_sdk.datasets import Dataset
from runtimes.capabilities import BACKENDS
from runtimes.errors import InputError
from runtimes.precision import Precision, PrecisionError
from runtimes.registry import backend_for_path

#: Default pseudo-ground-truth confidence: reference detections below it are not ground truth.
DEFAULT_REFERENCE_CONF = 0.25


@dataclass(frozen=True)
class Reference:
    """The configuration whose detections become ground truth."""

    backend: str
    precision: str
    conf: float
    artifact: str

    @property
    def label(self) -> str:
        """How every report names it: 'onnxruntime fp32, conf 0.25'."""
        return f"{self.backend} {self.precision}, conf {self.conf:g}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for report settings."""
        return {"backend": self.backend, "precision": self.precision, "conf": self.conf,
                "artifact": self.artifact, "label": self.label}


def parse_reference(spec: str) -> tuple[str | None, str]:
    """'fp32' -> (None, 'fp32'); 'onnxruntime:fp32' (or '/') -> ('onnxruntime', 'fp32')."""
    text = spec.strip().replace("/", ":")
    backend, sep, precision = text.rpartition(":")
    if not precision or (sep and not backend):
        raise InputError(f"--reference must be PRECISION or BACKEND:PRECISION (e.g. fp32, "
                         f"onnxruntime:fp32); got '{spec}'")
    if backend and backend not in BACKENDS:
        raise InputError(f"--reference {spec}: unknown backend '{backend}' "
                         f"(known: {', '.join(sorted(BACKENDS))})")
    try:
        return backend or None, Precision.parse(precision).value
    except PrecisionError as exc:
        raise InputError(f"--reference {spec}: {exc}") from None


def resolve_reference(spec: str, conf: float, model: Any, backend: str,
                      model_precision: str = "fp32") -> Reference:
    """The reference configuration: the named one, else `backend` at the precision, else the model's own backend
    (a training checkpoint: torch), else (for an ONNX model and fp32) ONNX Runtime fp32 of the same model;
    InputError when none can run."""
    if not 0.0 < conf < 1.0:
        raise InputError(f"--reference-conf must be between 0 and 1, got {conf:g}")
    named, precision = parse_reference(spec)
    tries = [named] if named else [backend, backend_for_path(model), "onnxruntime"]  # a checkpoint: on torch
    reasons = []
    for name in dict.fromkeys(tries):
        try:
            artifact = resolve_artifact(model, name, precision, model_precision)
        except ConfigSkipped as exc:
            reasons.append(str(exc))
            continue
        return Reference(name, precision, float(conf), str(artifact))
    raise InputError(f"--reference {spec}: cannot run it on this model ({'; '.join(reasons)})")


def reference_gt(dataset: Dataset, detections: list[dict[str, Any]], conf: float,
                 image_ids: set[int]) -> dict[str, Any]:
    """COCO ground truth of the scored images whose boxes are the reference's detections with
    score >= conf (the data set's own labels, if any, are replaced)."""
    gt = restrict_to_images(dataset.to_coco(), image_ids)
    kept = [d for d in detections if d["score"] >= conf and d["image_id"] in image_ids]
    anns = [{"id": i, "image_id": d["image_id"], "category_id": d["category_id"],
             "bbox": [float(v) for v in d["bbox"]], "area": float(d["bbox"][2] * d["bbox"][3]),
             "iscrowd": 0} for i, d in enumerate(kept, start=1)]
    return {**gt, "annotations": anns,
            "info": {"description": f"agreement ground truth: {len(anns)} reference detections"}}
