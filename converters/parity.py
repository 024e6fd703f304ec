"""Output parity of a converted artifact against its ONNX fp32 reference, on any backend.

Both models run on the same letterboxed synthetic frames. Raw outputs are compared with box
and score channels kept apart (a shared scale can crush scores while a whole-output cosine
still reads 0.999), then both are decoded and their detections matched.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.decode import DecodeConfig, decode, infer_layout, pixel_boxes
from edge_sdk.letterbox import preprocess
from edge_sdk.meta import ModelMeta
from edge_sdk.nms import box_iou_one
from edge_sdk.synth import CLASS_NAMES, render_image
from runtimes import Runtime, RuntimeOptions, load
from runtimes.errors import LayoutError
from runtimes.precision import Precision

MATCH_IOU = 0.5


@dataclass(frozen=True)
class ParityTolerance:
    """Pass limits; None leaves a metric unchecked. Box errors are in input pixels divided by the
    longer input side; cosines are centred (Pearson); rates are over reference detections."""

    box_max_abs_frac: float | None = 1e-3
    score_max_abs: float | None = 1e-3
    box_cosine: float = 0.9999
    score_cosine: float = 0.9999
    match_rate: float = 0.98
    mean_iou: float = 0.99
    class_agreement: float = 0.99
    count_diff_frac: float = 0.02


#: Defaults per precision the candidate actually ran at. Reduced precisions leave the box maximum
#: unchecked: one outlier box can move tens of pixels (bf16 on an untrained net: 58 px of 128).
_REDUCED = ParityTolerance(box_max_abs_frac=None, score_max_abs=0.1, box_cosine=0.99, score_cosine=0.99,
                           match_rate=0.85, mean_iou=0.9, class_agreement=0.95, count_diff_frac=0.1)
_INT8 = ParityTolerance(box_max_abs_frac=None, score_max_abs=None, box_cosine=0.95, score_cosine=0.95,
                        match_rate=0.7, mean_iou=0.8, class_agreement=0.9, count_diff_frac=0.2)
TOLERANCES: dict[Precision, ParityTolerance] = {
    Precision.FP32: ParityTolerance(),
    Precision.FP16: _REDUCED,
    Precision.BF16: _REDUCED,
    Precision.INT8: _INT8,
    Precision.MIXED: _INT8,
}


def tolerance_for(precision: str) -> ParityTolerance:
    """The default tolerance for a precision name (fp32's, the strictest, when unknown)."""
    known = precision in Precision._value2member_map_
    return TOLERANCES.get(Precision(precision), TOLERANCES[Precision.FP32]) if known else TOLERANCES[Precision.FP32]


@dataclass
class ParityResult:
    """Raw-output errors (boxes and scores apart) and detection agreement, with a verdict."""

    layout: str
    images: int
    box_max_abs: float
    box_mean_abs: float
    box_cosine: float
    score_max_abs: float
    score_mean_abs: float
    score_cosine: float
    ref_detections: int
    cand_detections: int
    matched: int
    match_rate: float
    mean_iou: float
    class_agreement: float
    count_diff: int
    input_size: tuple[int, int]
    tolerance: ParityTolerance
    precision_used: str = "fp32"
    failures: list[str] = field(default_factory=list)
    note: str | None = None  # e.g. why the candidate ran at another precision than the exported one

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        out["passed"] = self.passed
        out["precision_used"] = str(self.precision_used)
        return out

    def summary(self) -> str:
        """One line: verdict, box/score errors and detection agreement."""
        verdict = "PASS" if self.passed else "FAIL (" + "; ".join(self.failures) + ")"
        return (f"parity {verdict}: boxes max|d| {self.box_max_abs:.3g} px cos {self.box_cosine:.5f}, "
                f"scores max|d| {self.score_max_abs:.3g} cos {self.score_cosine:.5f}, "
                f"detections {self.matched}/{self.ref_detections} matched (IoU {self.mean_iou:.3f}, "
                f"class {self.class_agreement:.3f}, count {self.count_diff:+d}) at {self.precision_used}"
                + (f" ({self.note})" if self.note else ""))


def split_rows(output: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """(box values, score values) of a batched raw output in a head layout."""
    if layout == "yolov8":
        return output[:, :4, :], output[:, 4:, :]
    if layout == "yolov5":
        return output[..., :4], output[..., 4:]
    if layout == "end2end":
        return output[..., :4], output[..., 4:5]
    raise LayoutError(f"unknown layout '{layout}'")


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of a and b after removing each one's mean (1.0 when both are constant and equal)."""
    x = a.astype(np.float64).ravel() - a.mean(dtype=np.float64)
    y = b.astype(np.float64).ravel() - b.mean(dtype=np.float64)
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny and np.allclose(a, b) else 0.0
    return float(np.dot(x, y) / (nx * ny))


def match_detections(ref: tuple[np.ndarray, ...], cand: tuple[np.ndarray, ...],
                     iou: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """Greedy class-agnostic matching, best reference score first: (ref index, cand index, IoU)."""
    ref_boxes, ref_scores, _ = ref
    cand_boxes = cand[0]
    free = np.ones(len(cand_boxes), bool)
    pairs = []
    for r in np.argsort(-ref_scores, kind="stable"):
        idx = np.nonzero(free)[0]
        if not len(idx):
            break
        ious = box_iou_one(ref_boxes[r], cand_boxes[idx])
        best = int(np.argmax(ious))
        if ious[best] >= iou:
            free[idx[best]] = False
            pairs.append((int(r), int(idx[best]), float(ious[best])))
    return pairs


def compare_outputs(ref: list[np.ndarray], cand: list[np.ndarray], layout: str, input_size: tuple[int, int],
                    tolerance: ParityTolerance, conf: float = 0.25, precision_used: str = "fp32") -> ParityResult:
    """Compare per-image raw outputs (each [1, ., .]) of a reference and a candidate."""
    r, c = np.concatenate(ref).astype(np.float32), np.concatenate(cand).astype(np.float32)
    if r.shape != c.shape:
        raise LayoutError(f"candidate output shape {c.shape} differs from the reference's {r.shape}")
    (rb, rs), (cb, cs) = split_rows(r, layout), split_rows(c, layout)
    db, ds = np.abs(cb - rb), np.abs(cs - rs)
    det = _detection_agreement(r, c, layout, conf)
    res = ParityResult(layout, len(ref), float(db.max()), float(db.mean()), centred_cosine(rb, cb),
                       float(ds.max()), float(ds.mean()), centred_cosine(rs, cs), **det,
                       input_size=(int(input_size[0]), int(input_size[1])), tolerance=tolerance,
                       precision_used=precision_used)
    res.failures = _failures(res, tolerance)
    return res


def _detection_agreement(ref: np.ndarray, cand: np.ndarray, layout: str, conf: float) -> dict[str, Any]:
    cfg = DecodeConfig(conf=conf)
    n_ref = n_cand = 0
    ious: list[float] = []
    same_class = 0
    for rd, cd in zip(decode(ref, layout, cfg), decode(cand, layout, cfg), strict=False):
        pairs = match_detections(rd, cd)
        n_ref, n_cand = n_ref + len(rd[0]), n_cand + len(cd[0])
        ious += [p[2] for p in pairs]
        same_class += sum(int(rd[2][i] == cd[2][j]) for i, j, _ in pairs)
    matched = len(ious)
    return {"ref_detections": n_ref, "cand_detections": n_cand, "matched": matched,
            "match_rate": matched / n_ref if n_ref else 1.0,
            "mean_iou": float(np.mean(ious)) if ious else (1.0 if not n_ref else 0.0),
            "class_agreement": same_class / matched if matched else (1.0 if not n_ref else 0.0),
            "count_diff": n_cand - n_ref}


def _failures(res: ParityResult, tol: ParityTolerance) -> list[str]:
    out = []
    side = max(res.input_size)
    if tol.box_max_abs_frac is not None and res.box_max_abs > tol.box_max_abs_frac * side:
        out.append(f"box max|d| {res.box_max_abs:.3g} > {tol.box_max_abs_frac * side:.3g} px")
    if tol.score_max_abs is not None and res.score_max_abs > tol.score_max_abs:
        out.append(f"score max|d| {res.score_max_abs:.3g} > {tol.score_max_abs:.3g}")
    checks = (("box cosine", res.box_cosine, tol.box_cosine), ("score cosine", res.score_cosine, tol.score_cosine),
              ("match rate", res.match_rate, tol.match_rate), ("mean IoU", res.mean_iou, tol.mean_iou),
              ("class agreement", res.class_agreement, tol.class_agreement))
    out += [f"{name} {got:.4f} < {want}" for name, got, want in checks if got < want]
    if abs(res.count_diff) > tol.count_diff_frac * max(res.ref_detections, 1):
        out.append(f"count diff {res.count_diff:+d} over {tol.count_diff_frac:.0%} of {res.ref_detections}")
    return out


def parity_inputs(input_size: tuple[int, int], n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """n letterboxed synthetic scenes (some non-square, rendered larger than the input), NCHW float32."""
    side = int(max(input_size) * 1.5)
    frames = [render_image(seed, "test", i, side, CLASS_NAMES, nonsquare=0.5).image for i in range(n)]
    return [preprocess(f, input_size)[0] for f in frames]


def _to_layout(x: np.ndarray, runtime: Runtime) -> np.ndarray:
    """NCHW input as the runtime wants it (NHWC when its input's last dim is 3 and its second is not)."""
    shape = runtime.inputs[0].shape
    if len(shape) == 4 and shape[-1] == 3 and shape[1] != 3:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


def check_parity(reference: str | Path, candidate: str | Path, *, backend: str | None = None,
                 options: RuntimeOptions | None = None, tolerance: ParityTolerance | None = None,
                 images: int = 4, seed: int = 0, conf: float = 0.25) -> ParityResult:
    """Run the reference ONNX (ONNX Runtime, fp32) and a candidate artifact on the same inputs and compare.

    The default tolerance is the one for the precision the candidate actually ran at.
    """
    options = options or RuntimeOptions()
    ref_options = RuntimeOptions(threads=options.threads)  # the reference runs as it is stored
    with load(reference, "onnxruntime", ref_options) as ref_rt, load(candidate, backend, options) as cand_rt:
        meta = ModelMeta.from_props(ref_rt.metadata(), ref_rt.inputs[0].shape)
        if meta.imgsz is None:
            raise LayoutError(f"reference '{reference}' has a dynamic input size and no 'imgsz' metadata")
        xs = parity_inputs(meta.imgsz, images, seed)
        ref_out = [ref_rt.infer(x)[0] for x in xs]
        cand_out = [cand_rt.infer(_to_layout(x, cand_rt))[0] for x in xs]
        used = cand_rt.precision_used
        cand_extra = ModelMeta.from_props(cand_rt.metadata(), cand_rt.inputs[0].shape).extra
    layout = meta.layout or infer_layout(tuple(ref_out[0].shape), meta.nc)
    cand_out = [pixel_boxes(o, layout, cand_extra, meta.imgsz) for o in cand_out]  # normalised boxes: as pixels
    return compare_outputs(ref_out, cand_out, layout, meta.imgsz, tolerance or tolerance_for(used), conf, used)
