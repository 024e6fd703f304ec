"""The report page's validation views: per measured row with curves (edge_sdk.curves.views in its accuracy
record), the PR curve, F1 vs confidence with the best-F1 threshold marked, and the confusion matrix at the
deploy confidence; as inline SVG, with the figures also in tables so the page keeps them without matplotlib.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.report import plots as html_plots
from bench.report.html import DASH, config_label, esc, num, plot, table
from bench.report.rows import Accuracy, ResultRow
from edge_sdk.curves_text import MAX_MATRIX_CLASSES, top_confusions

__all__ = ["curves_section", "HEADING"]

HEADING = "Precision-recall, F1 vs confidence and confusion (IoU 0.5)"
_INTRO = ("Per measured configuration: precision vs recall (each class, and all classes pooled, COCO-interpolated), "
          "F1 vs confidence with the best-F1 threshold marked (red) and the deploy threshold (dotted), and the "
          "confusion matrix at the deploy threshold (rows predicted, columns true; the background row counts "
          "missed objects, the background column false detections). Axes span 0 to 1. AP50-95 and AP50 in the "
          "summary are pycocotools'; these are additional views.")


def curves_section(rows: Sequence[ResultRow]) -> list[str]:
    """The section: one block per measured row whose accuracy has curves (a dash line when none has)."""
    shown = [(config_label(r), acc) for r in rows if (acc := _with_curves(r)) is not None]
    out = [f"<h2>{esc(HEADING)}</h2>"]
    if not shown:
        return out + [f"<p>{DASH} no PR / F1 curves in this report (accuracy not measured, or written by an "
                      "older edgebench)</p>"]
    out.append(f"<p class=\"meta\">{esc(_INTRO)}</p>")
    for label, acc in shown:
        out += _row_block(label, acc)
    return out


def _with_curves(row: ResultRow) -> Accuracy | None:
    """The accuracy record of a measured row that has curves, else None."""
    acc = row.accuracy
    return acc if row.measured and acc is not None and acc.curves else None


def _row_block(label: str, acc: Accuracy) -> list[str]:
    curves: Mapping[str, Any] = acc.curves or {}
    confusion: Mapping[str, Any] = acc.confusion or {}
    curve_plots = (plot(html_plots.pr_svg(curves), "no PR curve stored")
                   + plot(html_plots.f1_svg(curves, acc.conf), "no F1 curve stored"))
    matrix = plot(html_plots.confusion_svg(confusion), "no confusion matrix stored")
    return [f"<h3>{esc(label)}</h3>", f"<div class=\"side\">{curve_plots}</div>",
            f"<div class=\"side\">{_threshold_table(acc, curves)}{matrix}</div>", *_confusion_table(confusion)]


def _threshold_table(acc: Accuracy, curves: Mapping[str, Any]) -> str:
    """Best F1 and its threshold (pooled, then per class) beside P/R/F1 at the deploy threshold."""
    overall: Mapping[str, Any] = curves.get("all") or {}
    rows: list[list[Any]] = [["all classes (pooled)", num(curves.get("map50"), 3), num(overall.get("best_f1"), 3),
                              num(overall.get("best_f1_conf"), 2), num(acc.precision, 3), num(acc.recall, 3),
                              num(acc.f1, 3)]]
    classes: Mapping[str, Mapping[str, Any]] = curves.get("classes") or {}
    rows += [[name, num(c.get("ap50"), 3), num(c.get("best_f1"), 3), num(c.get("best_f1_conf"), 2), DASH, DASH,
              DASH] for name, c in classes.items()]
    deploy = f"@{acc.conf:g}" if acc.conf is not None else "@deploy"
    return table(("classes", "AP50 (curve)", "best F1", "best-F1 conf", f"P{deploy}", f"R{deploy}",
                  f"F1{deploy}"), rows)


def _confusion_table(confusion: Mapping[str, Any]) -> list[str]:
    """The matrix as a table up to MAX_MATRIX_CLASSES classes, else the largest confusions."""
    labels: Sequence[str] = confusion.get("labels") or []
    matrix: Sequence[Sequence[int]] = confusion.get("matrix") or []
    if not labels or not matrix:
        return []
    if len(labels) - 1 > MAX_MATRIX_CLASSES:
        top = top_confusions(confusion)
        return [f"<details{_open()}><summary>Largest confusions (predicted, true)</summary>",
                table(("predicted", "true", "count"), ([p, t, num(c, 0)] for p, t, c in top)), "</details>"]
    return [f"<details{_open()}><summary>Confusion matrix as a table (rows predicted, columns true)</summary>",
            table(("predicted \\ true", *labels),
                  ([name, *(num(v, 0) for v in row)] for name, row in zip(labels, matrix, strict=False))),
            "</details>"]


def _open() -> str:
    """Tables are folded away under the plots, and open where there are no plots."""
    return "" if html_plots.available() else " open"
