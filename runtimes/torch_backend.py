"""torch reference backend: one of our training checkpoints (.ckpt), a TorchScript file (.pt) or a
torch.export program (.pt2), run eagerly on the CPU (CUDA with device "gpu").

It is the reference for parity checks of our own models: it returns the raw output tensors the ONNX
export of the same checkpoint returns (`[1, 4+nc, N]` for our detector, input `images` [1, 3, H, W]
float32), and the same metadata, so edge_sdk.Detector and converters.parity take it unchanged
(`check_parity("model.onnx", "model.ckpt", backend="torch")` checks an export against its source).

Checkpoints are rebuilt by the trainer, a layer above runtimes: the two `CHECKPOINT_*` entries name its
functions as "module:function" strings, resolved at load time (the same inversion as the capability
table's converter and quantizer entries), so runtimes never imports the trainer by name.
TorchScript and torch.export archives carry their metadata in an `edgebench.json` extra file (a JSON
object of metadata props, as ONNX metadata_props) or in the `<artifact>.json` sidecar.

Precision: the dtype of the model's float parameters (fp32 for our checkpoints); any other request
is refused (runtimes.precision's rule). torch's thread count is process-wide: each call sets the
requested count and puts the previous one back, under a lock (one call at a time per runtime, each
at the same thread count, so results do not depend on concurrency). When this backend is the first
to import torch it sets OMP_WAIT_POLICY=PASSIVE (unless set): spinning OpenMP workers collapse on a
busy machine (measured here: 1.3 s instead of 40 ms per 320x320 frame on 2 busy cores), and OpenMP
reads it only when torch loads.
"""
from __future__ import annotations

import ast
import importlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime, RuntimeOptions, TensorSpec, first_line
from runtimes.errors import HardwareUnavailableError, InputError, ModelLoadError
from runtimes.precision import Precision
from runtimes.registry import import_engine
from runtimes.threads import resolve_threads

#: the trainer's checkpoint reader (path -> trainer.checkpoint.LoadedModel)
CHECKPOINT_READER = "trainer.checkpoint:load_detector"
#: the metadata its ONNX export carries (LoadedModel, imgsz -> edge_sdk.meta.ModelMeta)
CHECKPOINT_META = "trainer.export:model_meta"
#: the file inside a .pt / .pt2 archive that holds our metadata props (a JSON object of strings)
EXTRA_FILE = "edgebench.json"
INPUT_NAME = "images"
SUFFIXES = (".ckpt", ".pt", ".pt2")
_GPU_DEVICES = ("gpu", "cuda")
OMP_WAIT_ENV = "OMP_WAIT_POLICY"
_WHY = ("the torch reference runs the model in its stored dtype (fp32 for our checkpoints); "
        "export to a deployment backend for fp16, bf16 or int8")


class TorchRuntime(Runtime):
    """A checkpoint or TorchScript/exported program on torch. Options.extra: imgsz (checkpoints: the input
    size, default the training size)."""

    name = "torch"

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(path, options)
        suffix = self.path.suffix.lower()
        if suffix not in SUFFIXES:
            raise ModelLoadError(f"the torch backend reads {', '.join(SUFFIXES)} files, got '{self.path.name}'")
        self.passive_wait = passive_openmp()  # whether OpenMP waits passively (see the module docstring)
        self._torch = import_engine("torch")
        self._device = self._pick_device()
        self._threads = resolve_threads(self.options.threads)
        self._lock = threading.Lock()
        loaded = {".ckpt": self._load_checkpoint, ".pt": self._load_torchscript, ".pt2": self._load_exported}
        self._module, self._props, size = loaded[suffix]()
        self._module = self._module.to(self._device)
        self._precision = module_precision(self._module)
        self._dtype = _torch_dtype(self._torch, self._precision)
        self._check_precision(_WHY)
        self._inputs = [TensorSpec(INPUT_NAME, (1, 3, size[0], size[1]))]
        self._outputs = self._probe()

    def _pick_device(self) -> Any:
        device = str(self.options.device or "auto").lower()
        if device in ("auto", "cpu"):
            return self._torch.device("cpu")
        if device.split(":")[0] not in _GPU_DEVICES:
            raise InputError(f"the torch backend runs on 'cpu' or 'gpu'/'cuda[:N]', not '{device}'")
        if not self._torch.cuda.is_available():
            raise HardwareUnavailableError(f"device '{device}' asked for, but torch sees no CUDA GPU "
                                           f"(torch {self._torch.__version__})")
        return self._torch.device("cuda" if device in _GPU_DEVICES else device)

    def _load_checkpoint(self) -> tuple[Any, dict[str, str], tuple[int, int]]:
        loaded = _entry(CHECKPOINT_READER)(self.path)
        size = int(self.options.extra.get("imgsz") or loaded.imgsz)
        stride = int(loaded.model.stride)
        if size <= 0 or size % stride:
            raise InputError(f"imgsz {size} must be a positive multiple of the model stride {stride}")
        props = _entry(CHECKPOINT_META)(loaded, size).to_props()
        return loaded.model.eval(), dict(props), (size, size)

    def _load_torchscript(self) -> tuple[Any, dict[str, str], tuple[int, int]]:
        extra = {EXTRA_FILE: ""}
        try:
            module = self._torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(f"cannot load TorchScript '{self.path}': {first_line(exc)}") from exc
        props = self._props_with_sidecar(extra[EXTRA_FILE])
        return module.eval(), props, self._size_from(props, None)

    def _load_exported(self) -> tuple[Any, dict[str, str], tuple[int, int]]:
        extra = {EXTRA_FILE: ""}
        try:
            program = self._torch.export.load(str(self.path), extra_files=extra)
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            raise ModelLoadError(f"cannot load the torch.export program '{self.path}': {first_line(exc)}") from exc
        props = self._props_with_sidecar(extra[EXTRA_FILE])
        return program.module(), props, self._size_from(props, _placeholder_shape(program))

    def _props_with_sidecar(self, stored: str | bytes) -> dict[str, str]:
        text = stored.decode("utf-8") if isinstance(stored, bytes) else stored
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"'{self.path.name}': its {EXTRA_FILE} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"'{self.path.name}': its {EXTRA_FILE} must hold a JSON object")
        ours = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        return {**super().metadata(), **ours}

    def _size_from(self, props: dict[str, str], shape: tuple[int, ...] | None) -> tuple[int, int]:
        """(H, W): options.extra["imgsz"], the metadata's imgsz, else a static [1, 3, H, W] program input."""
        size = self.options.extra.get("imgsz") or imgsz_from_props(props)
        if size is None and shape is not None and len(shape) == 4:
            size = shape[2:]
        if size is None:
            raise ModelLoadError(f"'{self.path.name}' has no 'imgsz' metadata: store the props in its {EXTRA_FILE} "
                                 "extra file or the sidecar, or pass imgsz in the runtime options")
        pair = [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]
        return (pair[0], pair[-1])

    def _probe(self) -> list[TensorSpec]:
        """Output specs from one run on zeros (also the first, slow call)."""
        try:
            outs = self._run([np.zeros(self._inputs[0].shape, np.float32)])  # type: ignore[arg-type]
        except RuntimeError as exc:
            raise ModelLoadError(f"'{self.path.name}' does not run on {tuple(self._inputs[0].shape)}: "
                                 f"{first_line(exc)}") from exc
        return [TensorSpec(f"output{i}", tuple(o.shape), str(o.dtype)) for i, o in enumerate(outs)]

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        torch, module = self._torch, self._module
        if module is None:
            raise ModelLoadError(f"'{self.path.name}' was closed")
        xs = [torch.from_numpy(np.ascontiguousarray(a)).to(self._device, self._dtype) for a in inputs]
        with self._lock:
            before = torch.get_num_threads()
            if before != self._threads:
                torch.set_num_threads(self._threads)
            try:
                with torch.inference_mode():
                    out = module(*xs)
            finally:
                if before != self._threads:
                    torch.set_num_threads(before)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().to("cpu", torch.float32).numpy() for o in outs]

    def metadata(self) -> dict[str, str]:
        return dict(self._props)

    @property
    def precision_used(self) -> Precision:
        """The dtype of the model's float parameters (UNKNOWN without any, MIXED with several)."""
        return self._precision

    def engine_versions(self) -> dict[str, str]:
        return {"torch": str(self._torch.__version__)}

    def close(self) -> None:
        self._module = None


def passive_openmp() -> bool:
    """Ask OpenMP for passive waiting before torch is first imported (a user's own setting wins); True when
    torch's OpenMP waits passively (as far as the environment says)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(OMP_WAIT_ENV, "PASSIVE")
    return os.environ.get(OMP_WAIT_ENV, "").upper() == "PASSIVE"


def module_precision(module: Any) -> Precision:
    """The precision of a torch module from the dtypes of its float parameters (buffers when it has none)."""
    kinds = {_PRECISIONS.get(str(p.dtype)) for p in module.parameters() if p.is_floating_point()}
    if not kinds:
        kinds = {_PRECISIONS.get(str(b.dtype)) for b in module.buffers() if b.is_floating_point()}
    if not kinds:
        return Precision.UNKNOWN
    if len(kinds) > 1:
        return Precision.MIXED
    return kinds.pop() or Precision.UNKNOWN


_PRECISIONS = {"torch.float32": Precision.FP32, "torch.float16": Precision.FP16, "torch.bfloat16": Precision.BF16}


def _torch_dtype(torch: Any, precision: Precision) -> Any:
    return {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}.get(precision, torch.float32)


def imgsz_from_props(props: dict[str, str]) -> list[int] | None:
    """The input size in metadata props: ours (the "edgebench" JSON), else the Ultralytics-style "imgsz"."""
    try:
        if props.get("edgebench"):
            value = json.loads(props["edgebench"]).get("imgsz")
        else:
            value = ast.literal_eval(props["imgsz"]) if props.get("imgsz") else None
    except (ValueError, SyntaxError, AttributeError) as exc:
        raise ModelLoadError(f"cannot read 'imgsz' from the model metadata: {exc}") from exc
    if value is None:
        return None
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def _placeholder_shape(program: Any) -> tuple[int, ...] | None:
    """The static shape of an exported program's first user input, or None."""
    names = list(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and names and node.name == names[0]:
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is not None and all(isinstance(d, int) for d in shape):
                return tuple(int(d) for d in shape)
    return None


def _entry(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
