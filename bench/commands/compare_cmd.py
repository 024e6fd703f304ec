"""`edgebench compare A.json B.json ...`: side by side, deltas, Pareto front, one recommendation."""
from __future__ import annotations

import json
from typing import Any

import click

from bench.report.compare import CompareOptions, compare_files
from edge_sdk.atomic import write_text_atomic
from runtimes.errors import ReportError


@click.command("compare")
@click.argument("reports", nargs=-1)
@click.option("--baseline", default=None,
              help="BACKEND/PRECISION[@IMGSZ] every row is compared with "
                   "(default: the fp32 row of the row's own backend).")
@click.option("--max-p99-ms", type=click.FloatRange(min=0), default=None,
              help="Budget: total p99 latency in ms (default: the profile's).")
@click.option("--max-map-drop", type=click.FloatRange(0, 1), default=None,
              help="Budget: AP50-95 drop vs the baseline, on COCO's 0..1 scale (default: the profile's).")
@click.option("--max-memory-mb", type=click.FloatRange(min=0), default=None,
              help="Budget: peak RSS in MiB (default: the profile's).")
@click.option("--profile", "-p", default=None,
              help="Take unset budgets from this profile (default: the reports' own profiles).")
@click.option("--per-class-drop", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="List classes whose AP50-95 drops by more than this vs the baseline.")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md",
              show_default=True,
              help="Markdown tables, one JSON object, or a self-contained HTML page with plots.")
@click.option("--output", "-o", default=None,
              help="Write to this file (atomically) instead of printing.")
def command(reports: tuple[str, ...], baseline: str | None, max_p99_ms: float | None,
            max_map_drop: float | None, max_memory_mb: float | None, profile: str | None,
            per_class_drop: float, fmt: str, output: str | None) -> None:
    """Compare the result rows of one or more report JSONs and recommend one configuration.

    The pick is the fastest by p99 among the rows meeting every budget (ties: higher AP50-95,
    then less memory); every other row says why it was not chosen. Nobody meeting the budgets
    is not an error: nothing is recommended and the exit code is 0.
    """
    opts = CompareOptions(baseline=baseline, max_p99_ms=max_p99_ms, max_map_drop=max_map_drop,
                          max_memory_mb=max_memory_mb, profile=profile,
                          per_class_drop=per_class_drop)
    result = compare_files(reports, opts)
    text = _render(result, fmt)
    if output is None:
        click.echo(text)
        return
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        raise ReportError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"comparison: {output}", err=True)


def _render(result: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2)
    if fmt == "html":
        from bench.report.compare_html import render_compare_html

        return render_compare_html(result)
    from bench.report.compare_render import render_compare_markdown

    return render_compare_markdown(result)
