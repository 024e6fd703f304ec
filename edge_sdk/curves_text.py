"""Text views of edge_sdk.curves.views: the best-F1 threshold, a small threshold sweep and the confusion
matrix (the full matrix up to MAX_MATRIX_CLASSES classes, the largest confusions beyond)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_MATRIX_CLASSES", "top_confusions", "format_confusion", "format_views"]

#: the matrix is printed whole up to this many classes (plus background)
MAX_MATRIX_CLASSES = 20
_SWEEP = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75)


def top_confusions(confusion: Mapping[str, Any], n: int = 10) -> list[tuple[str, str, int]]:
    """(predicted, true, count) of the n largest off-diagonal cells (background row/column included)."""
    labels: Sequence[str] = confusion.get("labels") or []
    matrix: Sequence[Sequence[int]] = confusion.get("matrix") or []
    cells = [(labels[i], labels[j], int(v)) for i, row in enumerate(matrix) for j, v in enumerate(row)
             if i != j and v]
    return sorted(cells, key=lambda c: -c[2])[:n]


def format_confusion(confusion: Mapping[str, Any]) -> list[str]:
    """The matrix as aligned text lines (rows predicted, columns true), or its top confusions when large."""
    labels: Sequence[str] = confusion.get("labels") or []
    matrix: Sequence[Sequence[int]] = confusion.get("matrix") or []
    head = (f"Confusion matrix at conf >= {confusion.get('conf', 0):g}, IoU {confusion.get('iou', 0.5):g} "
            "(rows: predicted, columns: true; background row = missed objects, column = false detections):")
    if len(labels) - 1 > MAX_MATRIX_CLASSES:
        top = top_confusions(confusion)
        return [f"Top confusions at conf >= {confusion.get('conf', 0):g}, IoU {confusion.get('iou', 0.5):g} "
                f"({len(labels) - 1} classes: the full matrix is in --json and --plots):",
                *(f"  predicted {p:<16} true {t:<16} {c}" for p, t, c in top)]
    short = [str(x)[:12] for x in labels]
    width = max(6, *(len(x) for x in short), *(len(str(v)) for row in matrix for v in row))
    lines = [head, "  " + " " * width + "  " + " ".join(f"{x:>{width}}" for x in short)]
    for name, row in zip(short, matrix, strict=True):
        lines.append(f"  {name:>{width}}  " + " ".join(f"{v:>{width}}" for v in row))
    return lines


def _at(curve: Sequence[Any], grid: Sequence[float], conf: float) -> str:
    i = min(range(len(grid)), key=lambda k: abs(grid[k] - conf))
    v = curve[i] if i < len(curve) else None
    return "   n/a" if v is None else f"{float(v):6.3f}"


def format_views(result: Mapping[str, Any]) -> str:
    """Best-F1 threshold (pooled and per class), a threshold sweep and the confusion matrix of an accuracy
    result's `curves` / `confusion` (AccuracyResult.to_dict or a report's accuracy record)."""
    curves, confusion = result.get("curves"), result.get("confusion")
    if not isinstance(curves, Mapping) or not isinstance(confusion, Mapping):
        return "(no PR / F1 curves or confusion matrix in this result)"
    overall, grid = curves["all"], curves["conf"]
    lines = [f"Best F1 (IoU 0.5, all classes pooled): {overall['best_f1']:.4f} at conf {overall['best_f1_conf']:.2f}"
             f"  (mAP50 from the curves {curves.get('map50') or 0:.4f})",
             "Threshold sweep (all classes pooled):", "   conf      P      R     F1"]
    lines += [f"   {c:4.2f} {_at(overall['p'], grid, c)} {_at(overall['r'], grid, c)} {_at(overall['f1'], grid, c)}"
              for c in _SWEEP]
    classes: Mapping[str, Mapping[str, Any]] = curves.get("classes") or {}
    if classes:
        width = max(len(k) for k in classes)
        lines.append("Per class: AP50, best F1 at conf")
        lines += [f"  {k:<{width}}  {c['ap50']:.4f}  {c['best_f1']:.4f} at {c['best_f1_conf']:.2f}"
                  for k, c in classes.items()]
    return "\n".join(lines + format_confusion(confusion))
