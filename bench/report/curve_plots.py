"""Figures of the validation views (edge_sdk.curves.views: an accuracy record's `curves` and `confusion`):
the precision-recall curve, F1 vs confidence with the best-F1 threshold marked, and the confusion matrix.

matplotlib (the `report` extra) is imported inside the functions and used through
`matplotlib.figure.Figure` only. Precision, recall and F1 axes always span 0..1: a 0.002 gap must look
like one. bench.report.plots turns these figures into inline SVG; `edgebench val --plots` into PNG files.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtimes.errors import InputError

if TYPE_CHECKING:  # matplotlib is optional: imported at run time only inside the functions
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["pr_figure", "f1_figure", "confusion_figure", "write_pngs", "NO_MATPLOTLIB", "PNG_NAMES"]

NO_MATPLOTLIB = "plots need matplotlib, which is not installed: pip install 'edgebench[report]'"
PNG_NAMES = ("PR_curve.png", "F1_curve.png", "confusion_matrix.png")
#: per-class curves get a legend entry up to this many classes (thin grey lines beyond)
_LEGEND_CLASSES = 10
#: confusion matrix cells carry their count up to this many classes
_COUNTED_CLASSES = 25
_ALL = "#1d3f8f"
_MARK = "#d1495b"


def _axes(width: float = 4.6, height: float = 4.4) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _unit_axes(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    """Both axes fixed at 0..1 (never auto-zoomed), equal ticks."""
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, title=title)
    ticks = [i / 5 for i in range(6)]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)


def _legend(fig: Figure, ax: Axes) -> None:
    """The legend under the axes (never over the curves)."""
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncols=2, fontsize="x-small", frameon=False)


def _vals(seq: Sequence[Any] | None) -> list[float]:
    """A stored curve as floats, None (undefined precision) as NaN, which matplotlib leaves out."""
    return [float("nan") if v is None else float(v) for v in seq or ()]


def _class_lines(ax: Axes, classes: Mapping[str, Mapping[str, Any]], x_key: str, y_key: str,
                 grid: Sequence[float]) -> None:
    legend = len(classes) <= _LEGEND_CLASSES
    for name, c in classes.items():
        x = grid if x_key == "conf" else _vals(c.get(x_key))
        kw: dict[str, Any] = {"linewidth": 1.0, "clip_on": False}
        if legend:
            kw["label"] = f"{name} {c.get('ap50', 0):.3f}" if y_key == "p" else str(name)
        else:
            kw["color"], kw["alpha"] = "#8a8f98", 0.45
        ax.plot(x, _vals(c.get(y_key)), **kw)


def pr_figure(curves: Mapping[str, Any], title: str = "precision-recall (IoU 0.5)") -> Figure | None:
    """Precision vs recall: each class (traced over its confidence grid; legend: AP50) and all classes
    pooled (COCO-interpolated, bold), mAP50 in the legend."""
    overall = curves.get("all")
    if not isinstance(overall, Mapping) or not overall.get("pr"):
        return None
    fig, ax = _axes()
    _class_lines(ax, curves.get("classes") or {}, "r", "p", [])
    map50 = curves.get("map50")
    label = "all classes" + (f", mAP50 {map50:.3f}" if isinstance(map50, (int, float)) else "")
    ax.plot(_vals(curves.get("recall")), _vals(overall["pr"]), color=_ALL, linewidth=2.4, label=label,
            clip_on=False)
    _unit_axes(ax, "recall", "precision", title)
    _legend(fig, ax)
    return fig


def f1_figure(curves: Mapping[str, Any], deploy_conf: float | None = None,
              title: str = "F1 vs confidence (IoU 0.5)") -> Figure | None:
    """F1 per class and pooled (bold) over the confidence grid, the pooled precision and recall dashed,
    the best-F1 threshold marked (and the deploy threshold, dotted)."""
    overall = curves.get("all")
    if not isinstance(overall, Mapping) or not overall.get("f1"):
        return None
    fig, ax = _axes()
    _class_lines(ax, curves.get("classes") or {}, "conf", "f1", _vals(curves.get("class_conf")))
    conf = _vals(curves.get("conf"))
    ax.plot(conf, _vals(overall.get("p")), color=_ALL, linewidth=1, linestyle="--", alpha=0.7, label="precision (all)")
    ax.plot(conf, _vals(overall.get("r")), color=_ALL, linewidth=1, linestyle=":", alpha=0.9, label="recall (all)")
    best, at = overall.get("best_f1"), overall.get("best_f1_conf")
    ax.plot(conf, _vals(overall["f1"]), color=_ALL, linewidth=2.4, clip_on=False,
            label=f"F1 (all), best {best:.3f} at {at:.2f}" if best is not None and at is not None else "F1 (all)")
    if at is not None and best is not None:
        ax.axvline(at, color=_MARK, linewidth=1.2)
        ax.plot([at], [best], "o", color=_MARK, zorder=5, clip_on=False)
    if deploy_conf is not None:
        ax.axvline(deploy_conf, color="#555", linewidth=1, linestyle=":", label=f"deploy conf {deploy_conf:g}")
    _unit_axes(ax, "confidence threshold", "F1 / precision / recall", title)
    _legend(fig, ax)
    return fig


def confusion_figure(confusion: Mapping[str, Any], title: str | None = None) -> Figure | None:
    """The (nc+1)^2 matrix, rows predicted and columns true (background last); colour: the share of each
    true class (column), text: the count (up to _COUNTED_CLASSES classes)."""
    import numpy as np

    labels, matrix = confusion.get("labels"), confusion.get("matrix")
    if not labels or not matrix:
        return None
    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(axis=0, keepdims=True), 1)
    n = len(labels)
    side = min(11.0, 3.2 + 0.26 * n)
    fig, ax = _axes(side + 0.9, side)
    ax.grid(False)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    if n <= _COUNTED_CLASSES + 1:
        for (i, j), count in np.ndenumerate(m):
            if count:
                ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.55 else "#1d2127")
    size = 8 if n <= 15 else 6 if n <= 40 else 4
    ax.set_xticks(range(n), labels, rotation=90, fontsize=size)
    ax.set_yticks(range(n), labels, fontsize=size)
    conf, iou = confusion.get("conf"), confusion.get("iou", 0.5)
    default = f"confusion at conf >= {conf:g}, IoU {iou:g}" if conf is not None else "confusion"
    ax.set(xlabel="true", ylabel="predicted", title=title or default)
    return fig


def write_pngs(accuracy: Mapping[str, Any], out_dir: str | Path, dpi: int = 150) -> list[Path]:
    """PR_curve.png, F1_curve.png and confusion_matrix.png of an accuracy result (its `curves`,
    `confusion` and `deploy_conf` / `conf`) into `out_dir`; InputError without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(NO_MATPLOTLIB)
    curves, confusion = accuracy.get("curves") or {}, accuracy.get("confusion") or {}
    deploy = accuracy.get("deploy_conf", accuracy.get("conf"))
    figures = (pr_figure(curves), f1_figure(curves, deploy), confusion_figure(confusion))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, fig in zip(PNG_NAMES, figures, strict=True):
            if fig is not None:
                fig.savefig(out / name, format="png", dpi=dpi)
                written.append(out / name)
    except OSError as exc:
        raise InputError(f"cannot write plots to {out}: {exc.strerror or exc}") from exc
    return written
