"""ncnn backend: a `.param` + `.bin` pair (as pnnx writes it) on the CPU.

ncnn tensors are NCHW without the batch dim and an ncnn model is fixed to the input size it was
converted for (another size silently gives wrong outputs), so inputs must be exactly
[1, 3, H, W] float32 at the converted size. Blob names, shapes and the model's metadata come
from the sidecar `<model>.param.json` that `converters.ncnn.to_ncnn` writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, read_sidecar_json, sidecar_path
from runtimes.errors import BackendNotImplementedError, EdgebenchError, InputError, ModelLoadError
from runtimes.ncnn_precision import PRECISION_FLAGS, param_tally, switches_take_effect
from runtimes.precision import LayerTally, Precision
from runtimes.registry import import_engine
from runtimes.threads import resolve_threads


class NcnnRuntime(Runtime):
    """A model on ncnn (CPU). Options.extra: input_shape (for a .param without a sidecar).

    Precision sets ncnn's switches explicitly: fp32 (and no request) = all off, fp16 = fp16
    storage/arithmetic/packed, bf16 = bf16 storage/packed. On CPUs where a precision's switches
    change nothing (fp16 on x86, e.g. Zen 4: outputs bit-identical to fp32), `precision_used` is
    fp32 and an explicit request fails (runtimes.ncnn_precision measures it). A quantized .param
    runs int8 (mixed when some compute layers are float).
    """

    name = "ncnn"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        self._ncnn = ncnn = import_engine("ncnn")
        self._side = read_sidecar_json(self.path)
        param_text = _read_param(self.path)
        self._net = self._load_net(ncnn, param_text)
        self._inputs, self._outputs = self._specs(param_text)
        self._precision = self._measured_precision(ncnn, param_text)
        self._check_precision(_refusal(self.options.precision, self._precision))

    def _measured_precision(self, ncnn: Any, param_text: str) -> Precision:
        counted = param_tally(param_text)
        if counted.quantized:
            self._tally = counted
            return counted.precision
        switched = self._switched()
        used = switched if switches_take_effect(ncnn, switched) else Precision.FP32
        self._tally = LayerTally(used, 0, counted.total)
        return used

    def _switched(self) -> Precision:
        """The float precision whose switches are set (fp32 for no request and for int8/mixed models)."""
        asked = self.options.precision
        return asked if asked in PRECISION_FLAGS else Precision.FP32

    def _load_net(self, ncnn: Any, param_text: str) -> Any:
        net = ncnn.Net()
        opt = net.opt
        for key, value in self.option_values().items():
            setattr(opt, key, value)
        if net.load_param(str(self.path)) != 0:
            bad = unsupported_layers(param_text, ncnn)
            why = f"layers ncnn does not know: {', '.join(bad)}" if bad else "load_param failed"
            raise ModelLoadError(f"ncnn cannot load '{self.path}': {why}")
        if net.load_model(str(self.path.with_suffix(".bin"))) != 0:
            raise ModelLoadError(f"ncnn cannot load the weights '{self.path.with_suffix('.bin')}' (truncated or "
                                 f"not from this .param)")
        return net

    def option_values(self) -> dict[str, Any]:
        """The ncnn Option values this runtime sets (threads, passive waiting, precision switches)."""
        if self.options.device.lower() not in ("auto", "cpu"):
            raise BackendNotImplementedError(
                f"the ncnn backend runs on the CPU only; device '{self.options.device}' (Vulkan) is not implemented")
        # openmp_blocktime=0: idle OpenMP workers sleep at once (spinning collapses on a busy machine)
        return {"num_threads": resolve_threads(self.options.threads), "openmp_blocktime": 0,
                "use_vulkan_compute": False, **PRECISION_FLAGS[self._switched()]}

    def _specs(self, param_text: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        in_names = self._side.get("input_names") or list(self._net.input_names())
        out_names = self._side.get("output_names") or list(self._net.output_names())
        shape = self._side.get("input_shape") or self.options.extra.get("input_shape") or _input_layer_shape(param_text)
        if not shape:
            raise ModelLoadError(f"ncnn model '{self.path}' has no fixed input size: its sidecar "
                                 f"'{sidecar_path(self.path).name}' is missing or has no 'input_shape' "
                                 f"(convert with edgebench export, or pass extra input_shape)")
        out_shapes = self._side.get("output_shapes") or [[1, None, None]] * len(out_names)
        inputs = [TensorSpec(n, tuple(int(d) for d in shape)) for n in in_names]
        return inputs, [TensorSpec(n, tuple(s)) for n, s in zip(out_names, out_shapes, strict=False)]

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        ex = self._net.create_extractor()  # one per call: extractors are cheap and not shared
        for spec, arr in zip(self._inputs, inputs, strict=False):
            if arr.dtype != np.float32:
                raise InputError(f"input '{spec.name}' must be float32, got {arr.dtype}")
            ex.input(spec.name, self._ncnn.Mat(np.ascontiguousarray(arr[0])))
        return [self._extract(ex, spec) for spec in self._outputs]

    def _extract(self, ex: Any, spec: TensorSpec) -> np.ndarray:
        ret, mat = ex.extract(spec.name)
        if ret != 0:
            raise EdgebenchError(f"ncnn failed to compute output '{spec.name}' of '{self.path}' (code {ret})")
        out = np.array(mat)  # a copy: the Mat dies with the extractor
        want = spec.static_shape()
        if want is not None and int(np.prod(want)) == out.size:
            return out.reshape(want)
        return out[None]

    def engine_option(self, name: str) -> Any:
        """An ncnn Option value as the loaded net holds it (e.g. "num_threads", "use_bf16_storage")."""
        return getattr(self._net.opt, name)

    @property
    def precision_used(self) -> Precision:
        """int8/mixed from the .param's layers, else the switched precision if it takes effect here, else fp32."""
        return self._precision

    def engine_versions(self) -> dict[str, str]:
        return {"ncnn": str(self._ncnn.__version__)}

    def close(self) -> None:
        net, self._net = getattr(self, "_net", None), None
        if net is not None:
            net.clear()


def _refusal(asked: Precision | None, used: Precision) -> str:
    """Why ncnn does not run `asked` here (the text of a PrecisionUnsupportedError)."""
    if asked in (Precision.INT8, Precision.MIXED):
        return "the .param has no int8 layers"
    if used in (Precision.INT8, Precision.MIXED):
        return "the .param is quantized; it runs as it is (ask for int8 or nothing)"
    return f"ncnn's {asked} switches change nothing on this CPU (measured)"


def unsupported_layers(param_text: str, ncnn: Any | None = None) -> list[str]:
    """Layer types in a .param that ncnn cannot create (pnnx leftovers such as pnnx.Expression), sorted.

    With the ncnn module, every type ncnn does not register; without it, the dotted pnnx/torch names.
    """
    types = {line.split()[0] for line in param_text.splitlines()[2:] if line.strip()}
    if ncnn is None:
        return sorted(t for t in types if "." in t)
    return sorted(t for t in types if ncnn.layer_to_index(t) < 0)


def _read_param(path: Path) -> str:
    if path.suffix.lower() != ".param":
        raise ModelLoadError(f"ncnn reads a .param file (with its .bin), got '{path.name}'")
    if not path.with_suffix(".bin").is_file():
        raise ModelLoadError(f"ncnn model '{path}' has no weights file '{path.with_suffix('.bin').name}' next to it")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read ncnn param '{path}': {exc}") from exc
    if not text.startswith("7767517"):
        raise ModelLoadError(f"'{path}' is not a text ncnn param file (no 7767517 magic)")
    return text




def _input_layer_shape(param_text: str) -> list[int] | None:
    """[1, c, h, w] from an Input layer that declares 0=w 1=h 2=c, else None."""
    for line in param_text.splitlines()[2:]:
        parts = line.split()
        if parts and parts[0] == "Input":
            start = 4 + int(parts[2]) + int(parts[3])  # type name, bottom/top counts, blob names
            kv = dict(p.split("=", 1) for p in parts[start:] if "=" in p)
            if all(k in kv for k in ("0", "1", "2")):
                return [1, int(kv["2"]), int(kv["1"]), int(kv["0"])]
    return None
