"""`edgebench quantize --model M.onnx --backend B --calib IMAGES -o OUT`: INT8 through the engine's own quantizer."""
from __future__ import annotations

import sys
from typing import Any

import click

from bench.commands.int8_flags import int8_flags
from bench.options import CONF, COUNT, Command, threads_option
from bench.tasks.quantize import DEFAULT_MAX_ADDED, DEFAULT_MAX_MAP_DROP, QuantizeOptions, QuantizeOutcome, quantize
from runtimes.capabilities import quantizer_targets


@click.command("quantize", cls=Command)
@click.option("--model", "-m", default=None, help="A float ONNX model (ours or any Ultralytics-style export; "
                                                  "default: the bundled model).")
@click.option("--backend", "-b", default="onnxruntime", show_default=True,
              type=click.Choice(list(quantizer_targets()), case_sensitive=False),
              help="Whose quantizer and runtime: onnxruntime (QDQ .onnx), openvino (NNCF, .xml), tflite "
                   "(ai-edge-quantizer, .tflite), ncnn (our table + int8 .param/.bin).")
@click.option("--output", "-o", "out", required=True, help="The int8 artifact to write (.onnx, .xml, .tflite, .param).")
@int8_flags(rows=False)
@click.option("--data", "-d", default=None,
              help="Labelled data (data.yaml, COCO json) to score fp32 vs int8 on (default: the bundled model's "
                   "synthetic val set for the bundled model; none for others).")
@click.option("--max-images", type=COUNT.param_type(), default=None, help="Score only the first N images.")
@click.option("--max-map-drop", type=CONF.param_type(), default=DEFAULT_MAX_MAP_DROP, show_default=True,
              help="Largest relative AP50-95 drop accepted (0.01 = keep 99%, MLPerf's rule). Over it, with "
                   "--exclude auto, the layers ranked most sensitive are kept in float one at a time until it "
                   "fits; 1 turns the search off.")
@click.option("--max-added", type=COUNT.param_type(), default=DEFAULT_MAX_ADDED, show_default=True,
              help="Most layers the search may add to the automatic exclusions.")
@click.option("--no-parity", is_flag=True, help="Skip the parity check against the fp32 ONNX.")
@threads_option("Threads for quantizing, parity and scoring (default: physical cores).")
def command(out: str, no_parity: bool, threads: int | None, **kw: Any) -> None:
    """Quantize a float ONNX model to INT8 with one backend's own quantizer.

    Calibrates on --calib (never the evaluation images), keeps the head's output layers and decode tail in
    float (--exclude auto), writes the artifact with its provenance in the sidecar JSON, checks parity
    against the fp32 ONNX and, with labelled data, scores fp32 and int8 on the same images. Exits 1 when the
    drop stays over --max-map-drop or parity fails (the artifact is kept).
    """
    opts = QuantizeOptions(out=out, parity=not no_parity, threads=threads, **kw)
    outcome = quantize(opts, say=lambda line: click.echo(line, err=True))
    for line in summary_lines(outcome):
        click.echo(line)
    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)
    parity = outcome.export.parity
    over = outcome.scores is not None and opts.max_map_drop is not None and outcome.scores.drop > opts.max_map_drop
    if over or (parity is not None and not parity.passed):
        sys.exit(1)


def summary_lines(outcome: QuantizeOutcome) -> list[str]:
    """What was written, how, and how it scores."""
    result = outcome.export
    q = result.quantization or {}
    lines = [f"wrote {result.path} ({q.get('quantizer')}: {q.get('scheme')})",
             f"kept in float: {len(q.get('excluded') or [])} ({(q.get('exclusion') or {}).get('mode')})"]
    if result.parity is not None:
        lines.append(result.parity.summary())
    if outcome.sensitivity:
        lines += ["layer sensitivity (output SQNR with that layer kept in float):", outcome.sensitivity]
    for step in outcome.search:
        on = f" on {step['on']}" if step.get("on") else ""
        lines.append(f"search: +{step['added'][-1]} -> AP50-95 {step['AP50-95']:.4f} (drop {step['drop']:.1%}{on})")
    s = outcome.scores
    if s is not None:
        lines.append(f"AP50-95 fp32 {s.fp32['AP50-95']:.4f} -> int8 {s.int8['AP50-95']:.4f} (drop {s.drop:.1%}); "
                     f"AP50 {s.fp32['AP50']:.4f} -> {s.int8['AP50']:.4f}; {s.images} images")
    return lines
