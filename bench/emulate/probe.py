"""Raw outputs of an artifact on one fixed input, written to .npz: run once on the host and once under emulation
(`python -m bench.emulate.probe ARTIFACT PRECISION OUT.npz` inside), then `compare_raw` says how far the ARM
kernels are from the x86 ones (0.0 everywhere: bit-identical)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

#: the fixed input: seeded uniform noise in [0, 1], (1, 3, H, W)
SEED = 0


def probe_input(shape: tuple[int, ...]) -> np.ndarray:
    """The probe's input tensor of `shape`."""
    return np.random.default_rng(SEED).random(shape, dtype=np.float32)


def raw_outputs(artifact: str | Path, precision: str | None, threads: int = 1) -> dict[str, Any]:
    """{'out0'...: the engine's raw outputs, 'precision_used': what it ran} on the probe input."""
    from runtimes.registry import load

    runtime = load(artifact, precision=precision, threads=threads)
    shape = runtime.inputs[0].static_shape() or (1, 3, 320, 320)
    outputs = runtime.infer(probe_input(shape))
    result: dict[str, Any] = {f"out{i}": np.asarray(o) for i, o in enumerate(outputs)}
    result["precision_used"] = np.array(str(runtime.precision_used.value))
    return result


def compare_raw(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | bool]:
    """max |a - b| over every output, and whether they are bit-identical."""
    keys = sorted(k for k in a if k.startswith("out"))
    if keys != sorted(k for k in b if k.startswith("out")):
        return {"max_abs": float("inf"), "identical": False}
    worst = max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in keys)
    same = all(np.array_equal(a[k], b[k]) for k in keys)
    return {"max_abs": worst, "identical": same}


def main(argv: list[str]) -> int:
    """ARTIFACT PRECISION OUT.npz ('-' as PRECISION: as the artifact is)."""
    artifact, precision, out = argv
    np.savez(out, **raw_outputs(artifact, None if precision == "-" else precision))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
