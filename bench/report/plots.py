"""Figures of the HTML report as inline SVG text, drawn with matplotlib (the `report` extra).

matplotlib is imported inside the functions and used through `matplotlib.figure.Figure` (no
pyplot, no backend switch, no global state touched). Every function returns SVG markup, or
None when matplotlib is missing or there is nothing to draw.
"""
from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.report import curve_plots
from bench.report.sustained_rows import Window

if TYPE_CHECKING:  # matplotlib is optional (the `report` extra): imported at run time only inside the functions
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["available", "latency_svg", "scatter_svg", "class_ap_svg", "sustained_svg", "pr_svg", "f1_svg",
           "confusion_svg"]

_MAX_CLASSES = 40
_HEAD = re.compile(r"^.*?(?=<svg)", re.S)


def available() -> bool:
    """Whether matplotlib is installed (checked without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, list[list[Axes]]]:
    """A figure and its axes as rows of columns (axes[row][col]), every axes gridded."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    # squeeze=False: always a 2-D numpy object array of Axes (typed only as np.ndarray by matplotlib)
    axes: list[list[Axes]] = [list(row) for row in fig.subplots(nrows, ncols, squeeze=False)]
    for row in axes:
        for ax in row:
            ax.grid(True, alpha=0.3)
    return fig, axes


def _svg(fig: Figure) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    return _HEAD.sub("", buf.getvalue(), count=1).strip()


def latency_svg(samples: Mapping[str, Sequence[float]]) -> str | None:
    """Empirical CDF (left) and histogram (right) of the total latency of each configuration."""
    series = {k: sorted(float(v) for v in vals) for k, vals in samples.items() if len(vals)}
    if not series or not available():
        return None
    import numpy as np

    fig, axes = _figure(11, 3.8, ncols=2)
    cdf, hist = axes[0]
    lo = min(v[0] for v in series.values())
    hi = max(v[-1] for v in series.values())
    # a list: matplotlib's stubs type `bins` as Sequence[float] (same edges, hist converts them back)
    bins: list[float] = np.linspace(lo, hi if hi > lo else lo + 1e-3, 60).tolist()
    for label, vals in series.items():
        y = np.arange(1, len(vals) + 1) / len(vals)
        cdf.step(vals, y, where="post", label=label)
        hist.hist(vals, bins=bins, histtype="step", linewidth=1.4, label=label)
    for q in (0.5, 0.95, 0.99):
        cdf.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    cdf.set(xlabel="total latency per frame (ms)", ylabel="fraction of frames", title="CDF")
    hist.set(xlabel="total latency per frame (ms)", ylabel="frames", title="histogram")
    cdf.legend(fontsize="small", loc="lower right")
    return _svg(fig)


def scatter_svg(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """AP50-95 vs p99 of compare rows (bench.report.compare output): the Pareto front joined and marked,
    the recommended row circled."""
    placed = [r for r in rows if r.get("pareto") is not None]
    if not placed or not available():
        return None
    fig, axes = _figure(8, 4.6)
    ax = axes[0][0]
    xs = [r["metrics"]["p99"] for r in placed]
    ys = [r["metrics"]["AP"] for r in placed]
    ax.scatter(xs, ys, color="#8a8f98", zorder=2, label="dominated")
    front = sorted((r for r in placed if r["pareto"]), key=lambda r: r["metrics"]["p99"])
    ax.plot([r["metrics"]["p99"] for r in front], [r["metrics"]["AP"] for r in front],
            "o-", color="#d1495b", drawstyle="steps-post", zorder=3, label="Pareto front")
    for r in placed:
        m = r["metrics"]
        if r.get("recommended"):
            ax.scatter([m["p99"]], [m["AP"]], s=260, facecolors="none", edgecolors="#2e7d32",
                       linewidths=2, zorder=4, label="recommended")
        ax.annotate(str(r.get("label")), (m["p99"], m["AP"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.margins(x=0.25, y=0.15)  # room for the labels of the outermost points
    ax.set(xlabel="p99 total latency (ms), lower is better", ylabel="AP50-95, higher is better",
           title="accuracy vs tail latency")
    ax.legend(fontsize="small", loc="best")
    return _svg(fig)


def class_ap_svg(title: str, bars: Mapping[str, Mapping[str, float]]) -> str | None:
    """Grouped bars: per-class AP50-95 (x: class) of each labelled row."""
    bars = {k: v for k, v in bars.items() if v}
    if not bars or not available():
        return None
    import numpy as np

    classes = list(dict.fromkeys(c for v in bars.values() for c in v))[:_MAX_CLASSES]
    fig, axes = _figure(max(6.0, min(16.0, 1.0 + 0.45 * len(classes) * len(bars))), 3.6)
    ax = axes[0][0]
    x = np.arange(len(classes))
    width = 0.8 / len(bars)
    for i, (label, aps) in enumerate(bars.items()):
        heights = [_num(aps.get(c)) for c in classes]
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, heights, width, label=label)
    ax.set_xticks(x, classes, rotation=45 if len(classes) > 8 else 0, ha="right"
                  if len(classes) > 8 else "center", fontsize=8)
    ax.set(ylabel="AP50-95", title=title, ylim=(0, 1))
    ax.legend(fontsize="small")
    return _svg(fig)


def sustained_svg(windows: Sequence[Window]) -> str | None:
    """Per-window p50/p99 over time (top) and CPU clock / temperature (bottom), throttled
    windows shaded; x is each window's end (t_s). Missing figures are skipped."""
    pts = list(windows)
    if not pts or not available():
        return None
    t = [_num(w.t_s, i) for i, w in enumerate(pts)]
    fig, axes = _figure(11, 5.2, nrows=2)
    lat, env = axes[0][0], axes[1][0]
    _line(lat, t, [_num(w.p50_ms) for w in pts], "p50")
    _line(lat, t, [_num(w.p99_ms) for w in pts], "p99")
    lat.set(ylabel="latency per window (ms)", title="sustained run")
    _line(env, t, [_num(w.cpu_mhz) for w in pts], "CPU MHz", color="#3066be")
    env.set(xlabel="time (s)", ylabel="CPU clock (MHz)")
    temps = [_num(w.temp_c) for w in pts]
    if any(v == v for v in temps):
        twin = _line(env.twinx(), t, temps, "temperature °C", color="#d1495b")
        twin.set_ylabel("temperature (°C)")
        env.plot([], [], marker=".", color="#d1495b", label="temperature °C")  # legend entry
    for ax in (lat, env):
        for i, w in enumerate(pts):
            if w.throttled:  # a window spans (t0_s, t_s]; without t0_s, from the previous end
                left = _num(w.t0_s, t[i - 1] if i else t[i] - 1)
                ax.axvspan(left, t[i], color="orange", alpha=0.15, linewidth=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="upper left")
    return _svg(fig)


def pr_svg(curves: Mapping[str, Any] | None, title: str = "precision-recall (IoU 0.5)") -> str | None:
    """Precision vs recall per class and pooled (bench.report.curve_plots.pr_figure), axes 0..1."""
    if not curves or not available():
        return None
    fig = curve_plots.pr_figure(curves, title)
    return _svg(fig) if fig is not None else None


def f1_svg(curves: Mapping[str, Any] | None, deploy_conf: float | None = None) -> str | None:
    """F1 vs confidence, best-F1 threshold marked (bench.report.curve_plots.f1_figure), axes 0..1."""
    if not curves or not available():
        return None
    fig = curve_plots.f1_figure(curves, deploy_conf)
    return _svg(fig) if fig is not None else None


def confusion_svg(confusion: Mapping[str, Any] | None) -> str | None:
    """The confusion matrix with its background row and column (bench.report.curve_plots.confusion_figure)."""
    if not confusion or not available():
        return None
    fig = curve_plots.confusion_figure(confusion)
    return _svg(fig) if fig is not None else None


def _line(ax: Axes, x: Sequence[float], y: Sequence[float], label: str, color: str | None = None) -> Axes:
    if any(v == v for v in y):  # at least one value that is not NaN
        ax.plot(x, y, marker=".", label=label, color=color)
    return ax


def _num(value: Any, default: float = float("nan")) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default
