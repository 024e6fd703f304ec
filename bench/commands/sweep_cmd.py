"""`edgebench sweep`: measure every backend x precision x input size, each in its own process."""
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
    SIZES,
    WARMUP,
    Command,
    class_map_option,
    deprecated,
    threads_option,
)
from bench.report.rows import ResultRow
from bench.report.writer import render_table
from bench.sweep.agreement import DEFAULT_REFERENCE_CONF
from bench.sweep.run import terminal_notes
from bench.sweep.sweep import SweepOptions, sweep


@click.command("sweep", cls=Command)
@click.option("--profile", "-p", default=None, help="Profile name or YAML path (default: the one matching this host).")
@click.option("--model", "-m", default=None,
              help="ONNX model or other artifact (default: the bundled model), or a training checkpoint "
                   "(.ckpt; needs torch), exported once per --imgsz.")
@click.option("--data", "-d", default=None,
              help="data.yaml, COCO json, data set folder, or a folder of unlabelled images.")
@click.option("--backend", "backends", type=BACKENDS, default=None,
              help="One backend or a comma list, e.g. onnxruntime,openvino,ncnn (default: the profile's).")
@deprecated("--backends", "backends", "--backend", type=BACKENDS)
@click.option("--precisions", type=PRECISIONS, default=None,
              help="Comma list, e.g. fp32,fp16,int8 (case-insensitive; default: the profile's).")
@click.option("--imgsz", type=SIZES, default=None,
              help="Comma list of input sizes, multiples of 32 up to 8192 (default: the model's). An ONNX "
                   "serves only its own size; a .ckpt is exported at each.")
@click.option("--out", "out_dir", default=None,
              help="Folder receiving report.json/.md/.html and artifacts/ (default: a new "
                   "runs/<date-time>-<profile>/).")
@click.option("--overwrite", is_flag=True, help="Write into an --out folder that already holds a report.")
@click.option("--timeout", "timeout_s", type=POSITIVE_SECONDS.param_type(), default=1800.0, show_default=True,
              help=f"Seconds allowed per configuration (conversion + measurement; at most {MAX_SECONDS:.0f}).")
@threads_option("Engine threads (default: the profile's, capped at this host's physical cores; "
                "the physical cores when the profile sets none).")
@click.option("--warmup", type=WARMUP.param_type(), default=None,
              help="Warm-up iterations (default: the profile's; at most 1000000).")
@click.option("--min-iterations", type=ITERATIONS.param_type(), default=None,
              help="Minimum timed iterations (default: the profile's; at most 1000000).")
@click.option("--min-duration", "min_duration_s", type=SECONDS.param_type(), default=None,
              help=f"Minimum timed seconds (at most {MAX_SECONDS:.0f}, 7 days).")
@click.option("--no-accuracy", is_flag=True, help="Skip the mAP pass (latency and memory only).")
@click.option("--max-images", "max_eval_images", type=COUNT.param_type(), default=None,
              help="Score only the first N images.")
@deprecated("--max-eval-images", "max_eval_images", "--max-images", type=COUNT.param_type())
@click.option("--reference", default=None,
              help="PRECISION or BACKEND:PRECISION (e.g. fp32): also score every configuration against "
                   "this configuration's own detections ('agreement mAP', works without labels).")
@int8_flags()
@click.option("--rewrite", "rewrites", default=None, metavar="NAME[,NAME]|auto",
              help="ONNX graph rewrites before converting to the backend (see `edgebench export --help`); "
                   "'auto' keeps each exact rewrite only if it measurably helps that backend.")
@click.option("--allow-class-mismatch", is_flag=True,
              help="Score a data set whose class names or count differ from the model's, by class index "
                   "(default: that is an error before anything runs).")
@class_map_option()
@click.option("--reference-conf", type=CONF.param_type(), default=DEFAULT_REFERENCE_CONF, show_default=True,
              help="Reference detections at or above this score become the agreement ground truth.")
def command(profile: str | None, model: str | None, data: str | None, backends: tuple[str, ...] | None,
            precisions: tuple[str, ...] | None, imgsz: tuple[int, ...] | None, out_dir: str | None, timeout_s: float,
            threads: int | None,
            warmup: int | None, min_iterations: int | None, min_duration_s: float | None,
            no_accuracy: bool, max_eval_images: int | None, reference: str | None,
            reference_conf: float, rewrites: str | None, allow_class_mismatch: bool = False,
            overwrite: bool = False, class_map: str | None = None, **int8: Any) -> None:
    """Run every configuration in its own process with a timeout; failures become rows.

    The report is rewritten after each configuration, so Ctrl-C keeps what was measured
    (status "partial").
    """
    opts = SweepOptions(profile=profile, model=model, data=data, out_dir=out_dir, overwrite=overwrite,
                        backends=backends,
                        precisions=precisions, imgsz=imgsz, timeout_s=timeout_s, threads=threads,
                        warmup=warmup, min_iterations=min_iterations, min_duration_s=min_duration_s,
                        accuracy=not no_accuracy, max_eval_images=max_eval_images, command=list(sys.argv),
                        reference=reference, reference_conf=reference_conf, rewrites=rewrites,
                        allow_class_mismatch=allow_class_mismatch, class_map=class_map, **int8)
    bar: dict[str, Any] = {}

    def start(total: int) -> None:
        bar["bar"] = click.progressbar(length=total, label="sweep", file=sys.stderr, show_pos=True)
        bar["bar"].__enter__()

    def row_done(row: ResultRow) -> None:
        click.echo(f"\r{row_line(row)}{' ' * 8}", err=True)
        bar["bar"].update(1)

    try:
        report, json_path, md_path = sweep(opts, on_row=row_done, on_start=start)
    finally:
        if "bar" in bar:
            bar["bar"].__exit__(None, None, None)
    click.echo(render_table(report))
    click.echo(f"report: {json_path}\nsummary: {md_path}\nhtml: {json_path.with_suffix('.html')}")
    if report.sweep and report.sweep.interrupted:
        click.echo("interrupted: the report is marked partial", err=True)
        raise click.exceptions.Exit(130)
    for note in terminal_notes(report):
        click.echo(f"note: {note}", err=True)
    if not report.ok_rows:
        raise click.exceptions.Exit(1)


def row_line(row: ResultRow) -> str:
    """One line per finished configuration: its `config` (backend/int8-ptq@320), then FPS or the reason."""
    name = row.config
    if row.measured:
        return f"  {name}: {row.fps:.1f} FPS" + "".join(f"; {t}" for t in row.flag_texts("suspect"))
    return f"  {name}: {row.status}: {row.error}"
