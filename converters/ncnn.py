"""ONNX -> ncnn (.param + .bin) through the pnnx binary, with the model's metadata in a sidecar JSON.

pnnx writes fp16 weights unless told `fp16=0`, leaves side files (pnnx param/bin/py/onnx, a
`*.pnnxsim.onnx` next to its input) and exits 0 even when it keeps ops ncnn cannot load
(`pnnx.Expression`, `torch.*`): all three are handled here. The ncnn model is fixed to the
input size it is converted at (the ONNX's static size, else its `imgsz` metadata).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from converters.onnx_info import check_conversion, converted_props
from converters.onnx_info import onnx_io as read_onnx_io
from edge_sdk.atomic import write_json_atomic
from edge_sdk.meta import ModelMeta
from runtimes.base import sidecar_path
from runtimes.errors import BackendUnavailableError, ModelLoadError
from runtimes.ncnn_backend import unsupported_layers

#: pip extra holding pnnx (conversion only; the `ncnn` extra is the small runtime)
CONVERT_EXTRA = "ncnn-export"
PNNX_TIMEOUT_S = 900
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pnnx_binary() -> Path:
    """The pnnx executable: the one inside the `pnnx` package (found without importing it: that
    imports torch), else `pnnx` on PATH."""
    spec = importlib.util.find_spec("pnnx")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for name in ("pnnx", "pnnx.exe"):
            if (Path(folder) / name).is_file():
                return Path(folder) / name
    found = shutil.which("pnnx")
    if found:
        return Path(found)
    raise BackendUnavailableError("ncnn", "pnnx", CONVERT_EXTRA, "its converter binary is needed to convert to ncnn")


def onnx_io(onnx_path: Path) -> tuple[dict[str, str], list[Any], list[list[Any]]]:
    """(metadata_props, the single input's shape, output shapes); dynamic dims are None."""
    props, inputs, outputs = read_onnx_io(onnx_path)
    if len(inputs) != 1:
        raise ModelLoadError(f"ncnn conversion takes a model with one input, '{onnx_path.name}' has {len(inputs)}")
    return props, inputs[0], outputs


def fixed_input_shape(props: dict[str, str], shape: list[Any], name: str) -> list[int]:
    """[1, C, H, W] to convert at: static dims from the ONNX, batch 1, H and W from `imgsz` when dynamic."""
    if len(shape) != 4:
        raise ModelLoadError(f"ncnn conversion needs a rank-4 image input, '{name}' has shape {shape}")
    imgsz = ModelMeta.from_props(props, shape).imgsz
    if imgsz is None:
        raise ModelLoadError(f"'{name}' has a dynamic input size and no 'imgsz' metadata: cannot fix it for ncnn")
    return [1, int(shape[1] or 3), int(imgsz[0]), int(imgsz[1])]


def sidecar_data(props: dict[str, str], in_shape: list[int], out_shapes: list[list[Any]], precision: str,
                 source: str, blobs: tuple[list[str], list[str]]) -> dict[str, Any]:
    """The sidecar: the source's props, our ModelMeta props, and what the runtime needs (blobs, shapes)."""
    storage = "fp16" if precision == "fp16" else "fp32"
    outs = [[1 if i == 0 and d is None else d for i, d in enumerate(s)] for s in out_shapes]
    return {**converted_props(props, in_shape, precision, source, "ncnn"), "format": "ncnn", "source": source,
            "precision": precision,
            "weights_storage": storage, "input_names": blobs[0], "input_shape": in_shape,
            "output_names": blobs[1], "output_shapes": outs,
            "pnnx": _version("pnnx")}


def to_ncnn(onnx_path: str | Path, out_param: str | Path, precision: str = "fp32") -> Path:
    """Convert an ONNX model to `out_param` (+ `.bin`, + `.param.json` sidecar); returns the .param path.

    fp16 stores float16 weights (half the .bin); fp32 and bf16 keep float32 weights, and the
    precision is recorded in the sidecar as the one to run with. Nothing is left on failure.
    """
    src, out = Path(onnx_path), Path(out_param)
    check_conversion(src, out, precision, "ncnn", " (the .bin goes beside it)")
    binary = pnnx_binary()
    props, shape, out_shapes = onnx_io(src)
    in_shape = fixed_input_shape(props, shape, src.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        param, weights = _run_pnnx(binary, src, tmp, in_shape, fp16=precision == "fp16")
        blobs = _check_param(param.read_text(encoding="utf-8"), len(out_shapes), src.name)
        write_json_atomic(tmp / "side.json", sidecar_data(props, in_shape, out_shapes, precision, src.name, blobs))
        os.replace(weights, out.with_suffix(".bin"))
        os.replace(tmp / "side.json", sidecar_path(out))
        os.replace(param, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _run_pnnx(binary: Path, src: Path, tmp: Path, in_shape: list[int], fp16: bool) -> tuple[Path, Path]:
    """Run pnnx inside `tmp` on a link to `src`; returns the ncnn (.param, .bin) it wrote there."""
    link = tmp / "model.onnx"
    try:
        link.symlink_to(src.resolve())
    except OSError:  # no symlinks here (e.g. Windows without the privilege)
        shutil.copyfile(src, link)
    names = {"ncnnparam": "model.ncnn.param", "ncnnbin": "model.ncnn.bin", "ncnnpy": "model_ncnn.py",
             "pnnxparam": "model.pnnx.param", "pnnxbin": "model.pnnx.bin", "pnnxpy": "model_pnnx.py",
             "pnnxonnx": "model.pnnx.onnx"}
    args = [str(binary), link.name, f"inputshape=[{','.join(map(str, in_shape))}]f32", f"fp16={int(fp16)}",
            *(f"{k}={v}" for k, v in names.items())]
    try:
        proc = subprocess.run(args, cwd=tmp, capture_output=True, text=True, errors="replace",
                              timeout=PNNX_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"pnnx did not finish converting '{src.name}' in {PNNX_TIMEOUT_S} s") from exc
    param, weights = tmp / names["ncnnparam"], tmp / names["ncnnbin"]
    if proc.returncode != 0:
        raise ModelLoadError(f"pnnx failed on '{src.name}' (exit {proc.returncode}): "
                             f"{_last_line(proc.stdout + proc.stderr)}")
    if not param.is_file() or not weights.is_file():
        raise ModelLoadError(f"pnnx exited 0 on '{src.name}' but wrote no ncnn .param/.bin: "
                             f"{_last_line(proc.stdout + proc.stderr)}")
    return param, weights


def _check_param(text: str, n_outputs: int, name: str) -> tuple[list[str], list[str]]:
    """(input blob names, output blob names) of a pnnx-written .param; errors for ops ncnn cannot load."""
    bad = unsupported_layers(text, _ncnn_or_none())
    if bad:
        raise ModelLoadError(f"pnnx converted '{name}' with ops ncnn cannot load: {', '.join(bad)} "
                             f"(export the ONNX with a static input size and decode outside the graph)")
    rows = [ln.split() for ln in text.splitlines()[2:] if ln.strip()]
    inputs = [r[4] for r in rows if r[0] == "Input" and len(r) > 4]
    blobs = {b for r in rows if len(r) > 4 for b in r[4:4 + int(r[2]) + int(r[3])]}
    outputs = [f"out{i}" for i in range(n_outputs)]  # pnnx names the graph outputs out0, out1, ...
    missing = [b for b in outputs if b not in blobs]
    if len(inputs) != 1 or missing:
        raise ModelLoadError(f"pnnx output for '{name}' lacks the expected blobs (inputs {inputs}, missing {missing})")
    return inputs, outputs


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _ncnn_or_none() -> Any | None:
    """The ncnn module when installed (it knows its layer types), else None."""
    if importlib.util.find_spec("ncnn") is None:
        return None
    import ncnn

    return ncnn


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
