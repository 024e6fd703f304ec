"""Input sizes for `edgebench sweep --imgsz`: one ONNX source per size.

An ONNX model is fixed to its input size (anchors and reshapes are baked in), so it serves only
that size. A training checkpoint (.ckpt) is exported once per requested size (bench.tasks.export, in a
child process each: torch stays out of the sweep's own process); a size whose export fails
becomes that size's failed rows, not a failed sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.sweep.isolate import run_isolated
from bench.tasks.export import OnnxOptions, checkpoint_to_onnx


@dataclass
class SizeSources:
    """size -> ONNX that serves it; size -> why it cannot be served."""

    onnx: dict[int, Path] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def first(self) -> Path | None:
        return next(iter(self.onnx.values()), None)


def is_checkpoint(model: str | None) -> bool:
    return bool(model) and Path(str(model)).suffix.lower() == ".ckpt"


def export_sizes(ckpt: Path, sizes: tuple[int, ...] | None, out_dir: Path, timeout_s: float) -> SizeSources:
    """Export `ckpt` at each size (None: its training size, reported as size 0) into out_dir/artifacts."""
    sources = SizeSources()
    for size in sizes or (0,):
        path = out_dir / "artifacts" / f"{ckpt.stem}-{size or 'train'}.onnx"
        outcome = run_isolated(_export, ckpt, path, size or None, timeout_s=timeout_s)
        if outcome.status == "ok":
            sources.onnx[size] = path
        else:
            sources.failed[size] = f"exporting {ckpt.name} at {size or 'its training size'}: {outcome.error}"
    return sources


def _export(ckpt: Path, out: Path, size: int | None) -> str:
    """Child side: checkpoint -> ONNX at `size`."""
    return str(checkpoint_to_onnx(ckpt, out, OnnxOptions(imgsz=size)))
