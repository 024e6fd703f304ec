"""ncnn's calibration table (what ncnn2table writes and ncnn2int8 reads), written and read here.

One line per array, a name then space-separated scales (a value times the scale is its int8 code):
`<layer>_param_0 s0 s1 ...` are a layer's weight scales (one per output channel, one per group for a
depthwise convolution), `<layer> s` is the scale of the layer's input activation. Scales are 127 / the
clipping threshold (31 / absmax for 6-bit weights). A layer is quantized when it has both lines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.atomic import write_text_atomic
from runtimes.errors import CalibrationError

WEIGHT_SUFFIX = "_param_0"


@dataclass
class CalibrationTable:
    """Per-layer weight scales and input-activation scales, by ncnn layer name (file order kept)."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, float] = field(default_factory=dict)

    def layers(self) -> list[str]:
        """The layers with both a weight and an input scale (the ones to quantize), in weight order."""
        return [name for name in self.weights if name in self.inputs]

    def without(self, names: set[str]) -> CalibrationTable:
        """A copy without the layers in `names`."""
        return CalibrationTable({k: v for k, v in self.weights.items() if k not in names},
                                {k: v for k, v in self.inputs.items() if k not in names})

    def text(self) -> str:
        rows = [f"{name}{WEIGHT_SUFFIX} {' '.join(_fmt(s) for s in scales)}" for name, scales in self.weights.items()]
        rows += [f"{name} {_fmt(scale)}" for name, scale in self.inputs.items()]
        return "\n".join(rows) + "\n"


def _fmt(value: float) -> str:
    """A float32 scale with enough digits to read back the same float32."""
    return f"{float(np.float32(value)):.9g}"


def write_table(path: Path, table: CalibrationTable) -> Path:
    write_text_atomic(path, table.text())
    return path


def parse_table(text: str, where: str = "table") -> CalibrationTable:
    """A table from its text; CalibrationError naming the first bad line."""
    table = CalibrationTable()
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = np.array([float(v) for v in parts[1:]], np.float32)
        except ValueError as exc:
            raise CalibrationError(f"{where}:{number}: not a scale ({exc})") from exc
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise CalibrationError(f"{where}:{number}: '{parts[0]}' needs finite scales")
        if parts[0].endswith(WEIGHT_SUFFIX):
            table.weights[parts[0][: -len(WEIGHT_SUFFIX)]] = values
        elif values.size != 1:
            raise CalibrationError(f"{where}:{number}: an activation scale is one number, "
                                   f"'{parts[0]}' has {values.size}")
        else:
            table.inputs[parts[0]] = float(values[0])
    return table


def read_text(path: Path, what: str) -> str:
    """`path` as UTF-8 text; CalibrationError naming `what` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read the {what} '{path}': {exc}") from exc


def read_table(path: Path) -> CalibrationTable:
    return parse_table(read_text(path, "calibration table"), str(path))
