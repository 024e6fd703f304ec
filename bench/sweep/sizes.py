"""Input sizes for `edgebench sweep --imgsz`: one ONNX source per size.

An ONNX model is fixed to its input size (anchors and reshapes are baked in), so it serves only
that size. A training checkpoint (.ckpt) is exported once per requested size (bench.tasks.export, in a
child process each: torch stays out of the sweep's own process); a size whose export fails
becomes that size's failed rows, not a failed sweep. The torch backend runs the checkpoint itself at any of
those sizes (the reference the exports are checked against), never an ONNX export of it.

`edgebench run` with a checkpoint exports it once, at its training size, when a backend other than torch needs it
(`checkpoint_onnx`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.sweep.isolate import run_isolated
from bench.tasks.export import OnnxOptions, checkpoint_to_onnx
from runtimes.registry import backend_for_path


@dataclass
class SizeSources:
    """size -> ONNX that serves it; size -> why it cannot be served."""

    onnx: dict[int, Path] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def first(self) -> Path | None:
        return next(iter(self.onnx.values()), None)


def is_checkpoint(model: str | None) -> bool:
    return bool(model) and Path(str(model)).suffix.lower() == ".ckpt"


def runs_checkpoint(backend: str, model: str | Path | None) -> bool:
    """Whether `backend` runs the checkpoint `model` itself (torch), rather than an ONNX export of it."""
    return is_checkpoint(str(model) if model else None) and backend_for_path(str(model)) == backend


def checkpoint_onnx(ckpt: Path, out_dir: Path, timeout_s: float, cache: dict[str, str]) -> tuple[Path | None,
                                                                                                   str | None]:
    """(the ONNX export of `ckpt` at its training size in out_dir/artifacts, None) or (None, why it failed);
    exported once, the outcome kept in `cache`."""
    if not cache:
        sources = export_sizes(ckpt, None, out_dir, timeout_s)
        cache.update({"onnx": str(sources.onnx[0])} if 0 in sources.onnx else {"error": sources.failed[0]})
    return (Path(cache["onnx"]), None) if "onnx" in cache else (None, cache["error"])


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
