"""A backend added the documented way (one capability record + this runtime + this converter), for
tests/test_capabilities.py. Its artifact `.fake` is an ONNX file under another name, run by ONNX Runtime."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from runtimes.base import Runtime, RuntimeOptions
from runtimes.onnx_precision import onnx_precision
from runtimes.precision import Precision


class FakeRuntime(Runtime):
    """Delegates to an ONNX Runtime session on the same bytes."""

    name = "fake"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        from runtimes.ort_backend import OnnxRuntime

        self._inner = OnnxRuntime(self.path, RuntimeOptions(threads=self.options.threads))
        self._inputs, self._outputs = self._inner.inputs, self._inner.outputs
        self._precision = onnx_precision(self.path)
        self._check_precision()

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._inner.infer(inputs)

    def metadata(self) -> dict[str, str]:
        return self._inner.metadata()

    @property
    def precision_used(self) -> Precision:
        return self._precision


def to_fake(source: Path, out: Path, precision: Precision) -> Path:
    """The converter entry point: copy the ONNX to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out)
    return out
