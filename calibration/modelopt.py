"""INT8 for TensorRT through NVIDIA ModelOpt's ONNX PTQ: the float ONNX in, an explicitly quantized Q/DQ ONNX out.

TensorRT's implicit INT8 calibrators are deprecated (TensorRT 10.1); its route is explicit quantization: a
Q/DQ ONNX that the engine builder consumes. ModelOpt (`nvidia-modelopt[onnx]`) places the Q/DQ nodes the way
TensorRT fuses them and calibrates through ONNX Runtime, here on the CPU. It pins its own onnx and
onnxruntime-gpu, so it lives in an interpreter of its own (`make modelopt-venv`, or EDGEBENCH_MODELOPT_PYTHON)
and runs `calibration/modelopt_side.py` as a subprocess (bounded by a timeout). No TensorRT engine is built
here: the Q/DQ ONNX is checked and scored on ONNX Runtime's CPU provider as a proxy of the placement.
The Q/DQ ONNX itself is what the calibration cache stores.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from calibration.cache import CacheKey, CalibrationCache
from calibration.dataset import PREPROCESSING, CalibrationSet
from calibration.methods import Method
from calibration.request import QuantizeRequest, QuantizeResult
from edge_sdk.cachedir import cache_dir
from runtimes.errors import BackendUnavailableError, CalibrationError

ENGINE = "tensorrt"
PYTHON_ENV = "EDGEBENCH_MODELOPT_PYTHON"
#: the venv `make modelopt-venv` creates, under the edgebench cache
VENV_NAME = "modelopt-venv"
MAKE_HINT = f"make one with `make modelopt-venv` or point {PYTHON_ENV} at a Python that has nvidia-modelopt[onnx]"
#: our method -> ModelOpt's `calibration_method` for int8
METHODS = {Method.MINMAX: "max", Method.ENTROPY: "entropy"}
#: dtype of what stays float (ModelOpt's default, fp16, would convert the whole model; the builder decides that)
HIGH_PRECISION = "fp32"
#: seconds one quantization may take (ModelOpt's import alone is ~5 s; entropy over 300 images at 640 is minutes)
TIMEOUT_S = 3600.0
#: bumped when the side script's job (arguments given to ModelOpt) changes its output
SIDE_VERSION = "1"
CACHED_FILE = "model.int8.onnx"
SIDE_SCRIPT = Path(__file__).with_name("modelopt_side.py")
PROXY_NOTE = "scored on ONNX Runtime CPU as a proxy; TensorRT engine not built (no TensorRT/GPU here)"
_NO_MODELOPT = 3  # modelopt_side.NO_MODELOPT (not imported: that file belongs to the other interpreter)


def modelopt_method(method: Method) -> str:
    """ModelOpt's name for `method`; CalibrationError (one line) listing the ones it has."""
    method = Method.parse(method)
    if method not in METHODS:
        raise CalibrationError(f"the TensorRT quantizer (ModelOpt) has no '{method}' calibration; it supports "
                               f"{', '.join(m.value for m in METHODS)}")
    return METHODS[method]


def default_python() -> Path:
    """Where `make modelopt-venv` puts ModelOpt's interpreter."""
    return cache_dir() / VENV_NAME / "bin" / "python"


def modelopt_python() -> Path:
    """ModelOpt's interpreter: $EDGEBENCH_MODELOPT_PYTHON, else the cache's venv; BackendUnavailableError
    (with how to make one) when it is not there."""
    given = os.environ.get(PYTHON_ENV)
    path = Path(given) if given else default_python()
    if not path.is_file():
        where = f"{PYTHON_ENV}={given}" if given else str(path)
        raise BackendUnavailableError(ENGINE, "nvidia-modelopt", None,
                                      f"INT8 runs ModelOpt in its own interpreter; none at {where}: {MAKE_HINT}")
    return path


def missing() -> str | None:
    """Why this host cannot run the ModelOpt quantizer (no interpreter where it is looked for), or None; cheap
    (the interpreter's packages are checked when it runs)."""
    try:
        modelopt_python()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def side_versions(python: Path, timeout: float = 60.0) -> dict[str, str]:
    """The package versions in ModelOpt's interpreter (no ModelOpt import: fast)."""
    code = ("import json\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
            "for p in ('nvidia-modelopt', 'onnxruntime-gpu', 'onnxruntime', 'onnx', 'numpy'):\n"
            "    try:\n        out[p] = version(p)\n    except PackageNotFoundError:\n        pass\n"
            "print(json.dumps(out))\n")
    proc = _run([str(python), "-c", code], timeout, "reading its package versions")
    found: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    if "nvidia-modelopt" not in found:
        raise BackendUnavailableError(ENGINE, "nvidia-modelopt", None, f"not installed in {python}: {MAKE_HINT}")
    return found


def quantize(req: QuantizeRequest) -> QuantizeResult:
    """ModelOpt INT8 PTQ of `req.source` into a Q/DQ ONNX at `req.out`, `req.exclude` kept in float."""
    mo_method = modelopt_method(req.method)
    python = modelopt_python()
    versions = side_versions(python)
    key = cache_key(req, versions) if req.cache is not None else None
    hit, why = _from_cache(req.cache, key, req.out)
    if not hit:
        run_side(python, req.source, req.calib, mo_method, req.exclude, req.out)
        if req.cache is not None and key is not None:
            req.cache.store(key, {CACHED_FILE: req.out})
    return _result(req, mo_method, versions, hit, why)


def _from_cache(cache: CalibrationCache | None, key: CacheKey | None, out: Path) -> tuple[bool, str]:
    """Copy the cached Q/DQ ONNX to `out` when there is one for `key`; (hit, why it missed)."""
    if cache is None or key is None:
        return False, ""
    found = cache.lookup(key, (CACHED_FILE,))
    if found.files is None:
        return False, found.reason
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(found.files[CACHED_FILE], out)
    return True, ""


def cache_key(req: QuantizeRequest, versions: dict[str, str]) -> CacheKey:
    """What the Q/DQ ONNX depends on: model, images, method, what stays float, ModelOpt's stack."""
    from edge_sdk.hashing import sha256_of

    return CacheKey(model_sha256=sha256_of(req.source), calib_sha256=req.calib.sha256, method=str(req.method),
                    preprocessing=PREPROCESSING, engine=ENGINE,
                    versions={**versions, "edgebench.modelopt_side": SIDE_VERSION},
                    settings={"exclude": sorted(req.exclude), "high_precision_dtype": HIGH_PRECISION,
                              "calibration_eps": ["cpu"], "input_hw": list(req.calib.input_hw)})


def run_side(python: Path, source: Path, calib: CalibrationSet, method: str, exclude: tuple[str, ...], out: Path,
             timeout: float | None = None) -> dict[str, Any]:
    """Quantize `source` into `out` in ModelOpt's interpreter; its report (versions, patterns)."""
    with tempfile.TemporaryDirectory(prefix="eb-modelopt-") as tmp:
        work = Path(tmp)
        model = work / "model.onnx"  # ModelOpt writes its intermediate files beside the model
        shutil.copyfile(source, model)
        job = {"model": str(model), "calib": str(write_tensors(calib, work / "calib.npy")), "method": method,
               "exclude": list(exclude), "high_precision_dtype": HIGH_PRECISION, "out": str(work / "out.onnx"),
               "report": str(work / "report.json")}
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        _run([str(python), str(SIDE_SCRIPT), str(work / "job.json")], TIMEOUT_S if timeout is None else timeout,
             f"quantizing {Path(source).name}")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work / "out.onnx"), str(out))
        report: dict[str, Any] = json.loads((work / "report.json").read_text(encoding="utf-8"))
    return report


def write_tensors(calib: CalibrationSet, path: Path) -> Path:
    """The calibration tensors as one (N, 3, H, W) float32 .npy, written image by image (never all in memory)."""
    import numpy as np

    nchw = calib.with_layout("nchw")
    if not len(nchw):
        raise CalibrationError("no calibration images")
    h, w = nchw.input_hw
    stack = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(nchw), 3, h, w))
    for i, blob in enumerate(nchw.arrays()):
        stack[i] = blob[0]
    stack.flush()
    del stack
    return path


def _run(cmd: list[str], timeout: float, doing: str) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in ModelOpt's interpreter; CalibrationError with the stderr tail when it fails or hangs."""
    isolated = [cmd[0], "-I", *cmd[1:]]  # -I: neither our packages nor calibration/ (ort.py, ...) on its path
    try:
        proc = subprocess.run(isolated, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CalibrationError(f"ModelOpt {doing}: no result after {timeout:.0f} s (stopped){_tail(exc.stderr)}") \
            from None
    if proc.returncode == _NO_MODELOPT:
        raise BackendUnavailableError(ENGINE, "nvidia-modelopt", None, f"{_tail(proc.stderr).lstrip(': ')}; "
                                                                       f"{MAKE_HINT}")
    if proc.returncode != 0:
        raise CalibrationError(f"ModelOpt {doing} failed (exit {proc.returncode}){_tail(proc.stderr)}")
    return proc


def _tail(stderr: str | bytes | None, lines: int = 6) -> str:
    """The last lines of a child's stderr, on one line (': ...'), or ''."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return (": " + " | ".join(kept)) if kept else ""


def _result(req: QuantizeRequest, mo_method: str, versions: dict[str, str], hit: bool, why: str) -> QuantizeResult:
    from calibration.ort import float_compute_nodes

    version = versions.get("nvidia-modelopt", "?")
    ort = versions.get("onnxruntime-gpu") or versions.get("onnxruntime", "?")
    notes = [f"calibrated by ModelOpt's '{mo_method}' through ONNX Runtime {ort} (CPU provider) in its own "
             "interpreter", PROXY_NOTE]
    if why and why != "no entry":
        notes.append(f"calibration cache: {why}")
    return QuantizeResult(
        path=Path(req.out), quantizer=f"nvidia-modelopt {version}",
        scheme=(f"TensorRT explicit quantization (Q/DQ ONNX): activations int8 per-tensor symmetric, weights int8 "
                f"per-channel symmetric, the rest {HIGH_PRECISION}; calibration {req.method} over {len(req.calib)} "
                "image(s)"),
        excluded=tuple(req.exclude), float_ops=float_compute_nodes(req.out, req.exclude), cache_hit=hit,
        notes=tuple(notes),
        extra={"modelopt": version, "calibration_method": mo_method, "high_precision_dtype": HIGH_PRECISION,
               "versions": versions})
