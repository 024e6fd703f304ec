"""ONNX graph rewrites that help edge converters (onnx + numpy only): a registry of named rewrites,
`apply_rewrites` on a ModelProto and `rewritten_onnx` on a file.

| name | exact | what |
|---|---|---|
| dfl_4d | yes | DFL through 5-D tensors or ReduceSum(Softmax * bins) -> Reshape/Softmax/1x1 Conv on 4-D |
| upsample_d2s | yes | 2x nearest Resize -> Concat of 4 copies + DepthToSpace (XNNPACK delegates it) |
| silu_hardswish | no | x * Sigmoid(x) -> HardSwish (a different function: the model needs retraining) |
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from converters.rewrites_dfl import dfl_4d
from converters.rewrites_graph import is_topologically_sorted
from converters.rewrites_ops import silu_hardswish, upsample_d2s
from runtimes.errors import ModelLoadError, RewriteError


@dataclass(frozen=True)
class Rewrite:
    """A named graph rewrite; `exact` is False when it changes the function the model computes."""

    name: str
    exact: bool
    description: str
    apply: Callable[[onnx.ModelProto], tuple[onnx.ModelProto, int]]


@dataclass(frozen=True)
class RewriteResult:
    """What one rewrite did: how many sites it rewrote (0 is not an error) and whether it is exact."""

    name: str
    sites: int
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line, e.g. `rewrite upsample_d2s: 2 sites (exact)`."""
        kind = "exact" if self.exact else "function-changing: needs retraining"
        return f"rewrite {self.name}: {self.sites} site{'s' * (self.sites != 1)} ({kind})"


REWRITES: dict[str, Rewrite] = {r.name: r for r in (
    Rewrite("dfl_4d", True, "DFL on 4-D tensors: Reshape -> Softmax over the bins -> 1x1 Conv with the bin "
            "weights (replaces 5-D reshapes and ReduceSum(Softmax(x) * bins))", dfl_4d),
    Rewrite("upsample_d2s", True, "2x nearest Resize (NCHW) -> Concat of 4 copies on channels + "
            "DepthToSpace(2, DCR)", upsample_d2s),
    Rewrite("silu_hardswish", False, "x * Sigmoid(x) and Swish/SiLU -> HardSwish (changes the function; "
            "the model needs retraining with HardSwish)", silu_hardswish),
)}


def parse_names(names: str | Iterable[str] | None) -> list[str]:
    """Rewrite names from 'a,b' or a list (order kept, duplicates dropped); RewriteError if unknown."""
    items = names.split(",") if isinstance(names, str) else list(names or [])
    out = list(dict.fromkeys(n.strip() for n in items if n.strip()))
    unknown = [n for n in out if n not in REWRITES]
    if unknown:
        raise RewriteError(f"unknown rewrite {', '.join(map(repr, unknown))} "
                           f"(available: {', '.join(REWRITES)})")
    return out


def apply_rewrites(model: onnx.ModelProto, names: str | Iterable[str]) -> tuple[onnx.ModelProto, list[RewriteResult]]:
    """Apply the named rewrites in order to a copy of `model`; the result checks and is
    topologically sorted (RewriteError otherwise). The input model is not changed."""
    results = []
    for name in parse_names(names):
        rewrite = REWRITES[name]
        model, sites = rewrite.apply(model)
        if sites:
            _verify(model, name)
        results.append(RewriteResult(name, sites, rewrite.exact))
    return model, results


def _verify(model: onnx.ModelProto, name: str) -> None:
    if not is_topologically_sorted(model):
        raise RewriteError(f"rewrite {name} left the graph out of topological order")
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RewriteError(f"rewrite {name} produced an invalid graph: {first}") from exc


def rewritten_onnx(onnx_path: str | Path, names: str | Iterable[str],
                   out_dir: str | Path) -> tuple[Path, list[RewriteResult]]:
    """Write the rewritten model into `out_dir` (same file name, or `<stem>.rewritten.onnx` when that
    would overwrite the source); returns its path and what each rewrite did."""
    src, folder = Path(onnx_path), Path(out_dir)
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError, OSError and others for unreadable files
        raise ModelLoadError(f"cannot read ONNX model '{src}': {exc}") from exc
    model, results = apply_rewrites(model, names)
    dst = folder / src.name
    if dst.resolve() == src.resolve():
        dst = folder / f"{src.stem}.rewritten.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst, results
