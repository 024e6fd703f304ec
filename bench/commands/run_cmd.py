"""`edgebench run`: benchmark a model on a device profile (the main job)."""
from __future__ import annotations

import sys
from typing import Any

import click

from bench.commands.int8_flags import int8_flags
from bench.options import (
    BACKENDS,
    CONF,
    COUNT,
    ITERATIONS,
    MAX_SECONDS,
    POSITIVE_SECONDS,
    PRECISIONS,
    SECONDS,
    WARMUP,
    Command,
    class_map_option,
    deprecated,
    threads_option,
)
from bench.report.rows import ResultRow
from bench.report.sustained_rows import SustainedSection
from bench.report.writer import render_table
from bench.sweep.agreement import DEFAULT_REFERENCE_CONF
from bench.sweep.run import RunOptions, run, terminal_notes


@click.command("run", cls=Command)
@click.option("--profile", "-p", default=None,
              help="Built-in profile name or a profile YAML path (default: the profile matching this host).")
@click.option("--model", "-m", default=None, help="Model artifact (default: the bundled model).")
@click.option("--data", "-d", default=None,
              help="data.yaml, COCO json, data set folder, or a folder of unlabelled images "
                   "(default: the bundled model's synthetic val set).")
@click.option("--out", "out_dir", default=None,
              help="Folder receiving report.json/.md/.html and artifacts/ (default: a new "
                   "runs/<date-time>-<profile>/).")
@click.option("--overwrite", is_flag=True, help="Write into an --out folder that already holds a report.")
@click.option("--backend", "backends", type=BACKENDS, default=None,
              help="One backend or a comma list, each measured at the precisions (default: the profile's).")
@click.option("--precisions", type=PRECISIONS, default=None,
              help="Comma list overriding the profile's precisions (case-insensitive, each measured once).")
@threads_option("Engine threads (default: the profile's, capped at this host's physical cores; "
                "the physical cores when the profile sets none).")
@click.option("--warmup", type=WARMUP.param_type(), default=None,
              help="Warm-up iterations (default: the profile's; at most 1000000).")
@click.option("--min-iterations", type=ITERATIONS.param_type(), default=None,
              help="Minimum timed iterations (default: the profile's; at most 1000000).")
@click.option("--min-duration", "min_duration_s", type=SECONDS.param_type(), default=None,
              help=f"Minimum timed seconds (default: the profile's; at most {MAX_SECONDS:.0f}, 7 days).")
@click.option("--no-accuracy", is_flag=True, help="Skip the mAP pass (latency and memory only).")
@click.option("--max-images", "max_eval_images", type=COUNT.param_type(), default=None,
              help="Score only the first N images.")
@deprecated("--max-eval-images", "max_eval_images", "--max-images", type=COUNT.param_type())
@click.option("--reference", default=None,
              help="PRECISION or BACKEND:PRECISION (e.g. fp32): also score every configuration against "
                   "this configuration's own detections ('agreement mAP', works without labels).")
@click.option("--reference-conf", type=CONF.param_type(), default=DEFAULT_REFERENCE_CONF, show_default=True,
              help="Reference detections at or above this score become the agreement ground truth.")
@click.option("--allow-class-mismatch", is_flag=True,
              help="Score a data set whose class names or count differ from the model's, by class index "
                   "(default: that is an error before anything runs).")
@class_map_option()
@click.option("--strict-labels", is_flag=True, help="Stop at the first bad label instead of skipping it.")
@click.option("--timeout", "timeout_s", type=POSITIVE_SECONDS.param_type(), default=1800.0, show_default=True,
              help=f"Seconds allowed per configuration (at most {MAX_SECONDS:.0f}, 7 days).")
@int8_flags()
@click.option("--rewrite", "rewrites", default=None, metavar="NAME[,NAME]|auto",
              help="ONNX graph rewrites before converting to the backend (see `edgebench export --help`); "
                   "'auto' keeps each exact rewrite only if it measurably helps that backend.")
@click.option("--duration", "duration_s", type=SECONDS.param_type(), default=None,
              help="Sustained run: after the normal run, time the first precision that ran single-stream for "
                   "this many seconds, in windows with clock/temperature/throttling readings, and give a "
                   "drift verdict (default: the profile's bench.sustained_duration_s on the profile's own device, "
                   "none on any other host; 0 = none; at most 7 days).")
@click.option("--window", "window_s", type=POSITIVE_SECONDS.param_type(), default=None,
              help="Sustained-run window in seconds (default: duration / 20, between 0.5 and 10).")
def command(profile: str | None, model: str | None, data: str | None, out_dir: str | None,
            precisions: tuple[str, ...] | None,
            threads: int | None, warmup: int | None, min_iterations: int | None, min_duration_s: float | None,
            no_accuracy: bool, max_eval_images: int | None, strict_labels: bool, timeout_s: float,
            reference: str | None, reference_conf: float, duration_s: float | None = None,
            window_s: float | None = None, rewrites: str | None = None,
            allow_class_mismatch: bool = False, overwrite: bool = False,
            backends: tuple[str, ...] | None = None, class_map: str | None = None, **int8: Any) -> None:
    """Measure latency per stage, memory and mAP of a model on a device profile.

    Runs the profile's backend (or each --backend) at each of its precisions that can run here, each
    in its own process, prints a table and writes report.json, report.md and report.html into --out
    (default: runs/<date-time>-<profile>/). With no arguments: the bundled model on a synthetic val
    set, with the profile of this host.
    """
    opts = RunOptions(profile=profile, model=model, data=data, out_dir=out_dir, overwrite=overwrite,
                      backends=backends,
                      precisions=precisions, threads=threads, warmup=warmup,
                      min_iterations=min_iterations, min_duration_s=min_duration_s,
                      accuracy=not no_accuracy, max_eval_images=max_eval_images,
                      strict_labels=strict_labels, timeout_s=timeout_s, command=list(sys.argv),
                      reference=reference, reference_conf=reference_conf, duration_s=duration_s,
                      window_s=window_s, rewrites=rewrites, allow_class_mismatch=allow_class_mismatch,
                      class_map=class_map, **int8)
    report, json_path, md_path = run(opts, on_row=lambda row: click.echo(_row_line(row), err=True))
    click.echo(render_table(report))
    if report.sustained:
        click.echo(_sustained_line(report.sustained))
    click.echo(f"report: {json_path}\nsummary: {md_path}\nhtml: {json_path.with_suffix('.html')}")
    for note in terminal_notes(report):
        click.echo(f"note: {note}", err=True)
    if not report.ok_rows:
        raise click.exceptions.Exit(1)


def _row_line(row: ResultRow) -> str:
    if row.measured:
        flags = "".join(f"; {t}" for t in row.flag_texts("suspect"))
        return f"  {row.backend}/{row.precision}: {row.fps:.1f} FPS{flags}"
    return f"  {row.backend}/{row.precision}: {row.status}: {row.error}"


def _sustained_line(section: SustainedSection) -> str:
    if not section.ok:
        return f"sustained: {section.status}: {section.error}"
    return f"sustained {section.measured_s:.0f} s: {section.verdict} ({section.verdict_reason})"
