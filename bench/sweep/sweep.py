"""`edgebench sweep`: every backend x precision x input size, each in its own child with a timeout.

A configuration that fails to convert, crashes (even in native code) or hangs becomes a failed
row and the sweep goes on. The report (JSON + Markdown) is rewritten after every configuration
with status "partial", so an interrupted sweep keeps what it measured.

Test hook: `SweepOptions.job_fn` replaces the measuring child's function (default `run_job`; a conversion,
when planned, runs before it in a child of its own);
it must be a module-level function taking a `ConfigJob` so that it pickles.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.options import requested_precisions, validate_run_options
from bench.report.html import write_html_report
from bench.report.rows import Report, ResultRow, SweepInfo
from bench.report.writer import new_result, write_report
from bench.sweep.artifacts import ConfigJob, ConfigSkipped, run_config, run_job
from bench.sweep.finish import finish_report
from bench.sweep.gates import gate_collapse
from bench.sweep.hardware import mark_verified
from bench.sweep.outdir import out_folder
from bench.sweep.quant_route import mark_route
from bench.sweep.run import (
    RunContext,
    RunOptions,
    config_job,
    measure_spec,
    plan_config,
    prepare,
    row_from_outcome,
    start_report,
)
from bench.sweep.sizes import SizeSources, export_sizes, is_checkpoint, runs_checkpoint
from runtimes.errors import ModelLoadError

__all__ = ["ConfigJob", "SweepOptions", "run_job", "sweep"]


@dataclass
class SweepOptions(RunOptions):
    """What `edgebench sweep` was asked; None means the profile's (backends, precisions) or the
    model's (imgsz). The report goes where `run`'s does (bench.sweep.outdir)."""

    imgsz: tuple[int, ...] | None = None
    job_fn: Callable[[ConfigJob], dict[str, Any]] | None = None


def sweep(opts: SweepOptions, on_row: Callable[[ResultRow], None] | None = None,
          on_start: Callable[[int], None] | None = None) -> tuple[Report, Path, Path]:
    """Measure every configuration; write report.json + report.md (after each row) and
    report.html (at the end) into the out folder (bench.sweep.outdir: opts.out_dir itself, else a new
    runs/<stamp>-<profile>/); return the report and the first two paths.

    `on_start(n)` is told the number of configurations, `on_row(row)` each row as it finishes.
    Ctrl-C stops the sweep cleanly: the report keeps status "partial" and `interrupted: true`.
    """
    validate_run_options(opts)  # every number, name and size checked before anything loads (bench.options)
    out = out_folder(opts.out_dir, opts.profile, opts.overwrite)  # refused before anything loads
    opts = dataclasses.replace(opts, out_dir=str(out))
    ctx, sources = _prepare(opts)
    grid = configurations(ctx, opts)
    report, matches = start_report(ctx, opts)
    report.sweep = info = SweepInfo(configurations=len(grid), interrupted=False)
    json_path, md_path = write_report(report, out)
    if on_start:
        on_start(len(grid))
    try:
        for backend, precision, size in grid:
            row = mark_route(mark_verified(_run_config(ctx, opts, backend, precision, size, sources), ctx.profile), ctx)
            report.results.append(row)
            gate_collapse(report.results)
            write_report(report, out)
            if on_row:
                on_row(row)
    except KeyboardInterrupt:
        info.interrupted = True
        report.notes = [*(report.notes or []), f"interrupted after {len(report.results)} of {len(grid)} configurations"]
        write_report(report, out)
        write_html_report(report, out)
        return report, json_path, md_path
    finish_report(report, ctx, matches)
    write_report(report, out)
    write_html_report(report, out)  # once at the end: plotting every row would slow the sweep
    return report, json_path, md_path


def _prepare(opts: SweepOptions) -> tuple[RunContext, SizeSources]:
    """The run context and the ONNX source of each size (a checkpoint is exported per size first)."""
    if not is_checkpoint(opts.model):
        ctx = prepare(opts)
        return ctx, SizeSources({max(_model_size(ctx)): ctx.model})
    ckpt = Path(str(opts.model))
    if not ckpt.is_file():
        raise ModelLoadError(f"model not found: {ckpt}")
    sources = export_sizes(ckpt, opts.imgsz, _out(opts), opts.timeout_s)
    if sources.first() is None:
        raise ModelLoadError(next(iter(sources.failed.values())))
    ctx = prepare(dataclasses.replace(opts, model=str(sources.first())))
    if 0 in sources.onnx:  # no --imgsz: the training size, now known
        sources.onnx = {max(_model_size(ctx)): sources.onnx[0]}
    return ctx, sources


def configurations(ctx: RunContext, opts: SweepOptions) -> list[tuple[str, str, int]]:
    """The grid backend x precision x imgsz, in that nesting order."""
    backends = opts.backends or ctx.backends or (ctx.profile.backend,)
    precisions = requested_precisions(opts.precisions) or ctx.profile.precisions  # canonical, once each
    sizes = opts.imgsz or (max(_model_size(ctx)),)
    return [(b, p, s) for b in backends for p in precisions for s in sizes]


def _run_config(ctx: RunContext, opts: SweepOptions, backend: str, precision: str, size: int,
                sources: SizeSources) -> ResultRow:
    """One row: skipped (with the reason), failed (with the error) or measured."""
    hw = list(_model_size(ctx))
    imgsz = hw if size == max(hw) else [size, size]
    if size in sources.failed and not runs_checkpoint(backend, opts.model):
        return new_result(backend, precision, imgsz=imgsz, status="failed", error=sources.failed[size])
    try:
        job = _plan(ctx, opts, backend, precision, size, sources)
    except ConfigSkipped as exc:
        return new_result(backend, precision, imgsz=imgsz, status="skipped", error=str(exc))
    outcome, made = run_config(job, opts.timeout_s, opts.job_fn or run_job)
    return row_from_outcome(ctx, job.spec, outcome, source=job.source,
                            **{"artifact": job.spec.model, "imgsz": imgsz, **made})


def _plan(ctx: RunContext, opts: SweepOptions, backend: str, precision: str, size: int,
          sources: SizeSources) -> ConfigJob:
    """The child's job for one configuration, or ConfigSkipped saying why it cannot run here."""
    hw = _model_size(ctx)
    if runs_checkpoint(backend, opts.model):  # torch: the checkpoint itself, at this size (the reference)
        plan = plan_config(ctx, Path(str(opts.model)), backend, precision, _out(opts))
        spec = dataclasses.replace(measure_spec(ctx, opts, plan.artifact, precision, backend),
                                   runtime_extra={"imgsz": size})
        return config_job(ctx, opts, spec, plan, precision)
    if size not in sources.onnx:
        raise ConfigSkipped(f"model input is fixed at {hw[0]}x{hw[1]}; sweep a training checkpoint (.ckpt) "
                            f"to measure {size}")
    plan = plan_config(ctx, sources.onnx[size], backend, precision, _out(opts))
    spec = measure_spec(ctx, opts, plan.artifact, precision, backend)
    return config_job(ctx, opts, spec, plan, precision)


def _out(opts: SweepOptions) -> Path:
    """The out folder, resolved by sweep() before anything runs."""
    if opts.out_dir is None:
        raise ValueError("sweep() resolves out_dir before planning")
    return Path(opts.out_dir)


def _model_size(ctx: RunContext) -> tuple[int, int]:
    h, w = ctx.model_meta["imgsz"]  # prepare() loaded the model: its size is known
    return int(h), int(w)
