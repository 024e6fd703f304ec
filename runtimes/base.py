"""The Runtime interface every backend implements: artifact in, raw output tensors out."""
from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtimes.errors import InputError, ModelLoadError
from runtimes.precision import LayerTally, Precision, check_request, parse_precision


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints, or str/None for dynamic dims) and numpy dtype name of a tensor."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def static_shape(self) -> tuple[int, ...] | None:
        """The shape when every dim is a positive int, else None."""
        if all(isinstance(d, int) and d > 0 for d in self.shape):
            return tuple(int(d) for d in self.shape)  # type: ignore[arg-type]
        return None


@dataclass
class RuntimeOptions:
    """Options common to all backends; backend-specific ones go in `extra`.

    `precision`: None runs the artifact as it is; a name or Precision is a checked request (see
    runtimes.precision for the rule). Names are validated here, so an unknown one fails at once.
    """

    threads: int | None = None
    precision: Precision | None = None
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.precision = parse_precision(self.precision)
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise InputError(f"threads must be a positive integer, got {self.threads!r}")


class Runtime(abc.ABC):
    """A loaded model on one engine. Backends return raw outputs only; decoding lives in edge_sdk."""

    name: ClassVar[str] = "base"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or RuntimeOptions()
        self._inputs: list[TensorSpec] = []  # filled by the backend when it loads the model
        self._outputs: list[TensorSpec] = []
        self._tally: LayerTally | None = None  # the compute-layer tally, where the backend reads one

    @property
    def inputs(self) -> list[TensorSpec]:
        """Input tensor specs, in the order `infer` takes them."""
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """Output tensor specs, in the order `infer` returns them."""
        return self._outputs

    @abc.abstractmethod
    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Engine call on already validated inputs."""

    def infer(self, inputs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the model on one array (single-input models) or a list of arrays."""
        arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        self._check_inputs(arrays)
        return self._run(arrays)

    def _check_inputs(self, arrays: list[np.ndarray]) -> None:
        specs = self.inputs
        if len(arrays) != len(specs):
            raise InputError(f"model takes {len(specs)} input(s), got {len(arrays)}")
        for arr, spec in zip(arrays, specs, strict=False):
            if arr.ndim != spec.rank:
                raise InputError(
                    f"input '{spec.name}' must have rank {spec.rank} {tuple(spec.shape)}, "
                    f"got rank {arr.ndim} {tuple(arr.shape)}"
                )
            for got, want in zip(arr.shape, spec.shape, strict=False):
                if isinstance(want, int) and want > 0 and got != want:
                    raise InputError(
                        f"input '{spec.name}' must have shape {tuple(spec.shape)}, got {tuple(arr.shape)}"
                    )

    def metadata(self) -> dict[str, str]:
        """Key/value metadata stored with the artifact (ONNX metadata_props, sidecar JSON, ...)."""
        return read_sidecar(self.path)

    @property
    def precision_used(self) -> Precision:
        """The precision the engine runs, from the engine or the artifact, never from the request;
        UNKNOWN where neither can tell. Backends override it."""
        return Precision.UNKNOWN

    @property
    def layer_tally(self) -> LayerTally | None:
        """How many compute layers the engine runs quantized, of how many (None where unknown): the
        integer-op fraction of an int8 or mixed model."""
        return self._tally

    def _check_precision(self, why: str = "") -> None:
        """Called by each backend once loaded: PrecisionUnsupportedError when an explicit request is not
        what runs (runtimes.precision.check_request); `why` says why and how to get it."""
        check_request(self.name, self.precision_used, self.options.precision, why)

    def engine_versions(self) -> dict[str, str]:
        """Versions of the engine packages this backend uses."""
        return {}

    def delegation(self) -> Any:
        """The delegate report (ops a delegate such as XNNPACK took, what it left out), or None when
        the backend has no delegates (see runtimes.tflite_delegation.Delegation)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract: most engines free on GC
        """Release engine resources. Safe to call twice."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sidecar_path(path: str | Path) -> Path:
    """Where metadata lives for formats that cannot hold it: `<artifact>.json`."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def read_sidecar_json(path: str | Path) -> dict[str, Any]:
    """`<artifact>.json` as a dict (empty when absent); ModelLoadError when unreadable or not an object."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read the sidecar '{side}': {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"sidecar '{side}' must hold a JSON object")
    return data


def first_line(exc: BaseException) -> str:
    """An engine exception's first line (engines put stack traces after it), or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_sidecar(path: str | Path) -> dict[str, str]:
    """Read `<artifact>.json` as string key/values; empty when absent, ModelLoadError when corrupt."""
    data = read_sidecar_json(path)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
