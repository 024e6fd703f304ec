"""ARM64 vs x86 on the same artifacts: AP50-95 on both sides, agreement mAP of the ARM detections against the x86
ones, parity of the raw outputs, and the precision each engine really used.

Run (as root: emulation needs it; takes 20-40 minutes at 10 images):
    python benchmarks/arm64_parity.py [--model M.onnx] [--data data.yaml] [--calib DATA.yaml:train]
        [--calib-images 64] [--max-images 10] [--configs ncnn:fp32 ncnn:fp16 ...] [--cpu cortex-a76]
        [--work DIR] [--write docs/arm64.md --block NAME]

Each artifact is made once on x86 (ncnn and TFLite by `converters.export`, int8 by each engine's own quantizer
on the explicit `--calib` set; ONNX Runtime fp32 is the ONNX itself; ncnn fp16 is the fp32 .param run with
ncnn's fp16 switches) and passed as --model to both `edgebench run ...` on x86 and `edgebench emulate --arch
arm64 -- run ...` (same profile, threads and images). Their reports give AP50-95 and precision_used. Then one
process per side (`python -m bench.emulate.detect`) saves every configuration's detections and its raw outputs
on a fixed input: the ARM detections are scored against the x86 detections of the same configuration as ground
truth (agreement mAP, bench.sweep.agreement: x86 detections at score >= 0.25), and the raw boxes/scores are
compared element-wise. A configuration x86 does not run (ncnn fp16: its switches do nothing on x86) is set
against x86's fp32 of the same artifact. With --write, the table replaces the block between the
`<!-- arm64-parity:NAME -->` markers of that file (`--block NAME`; without it `<!-- arm64-parity -->`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the checkout on sys.path)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARK = "arm64-parity"
#: (backend, precision) in table order, and the device profile each is run under
CONFIGS = ("ncnn:fp32", "ncnn:fp16", "ncnn:int8", "tflite:fp32", "tflite:int8", "onnxruntime:fp32",
           "onnxruntime:int8")
PROFILES = {"ncnn": "rpi5", "tflite": "android-arm64", "onnxruntime": "rpi5"}
SHORT_TIMING = ["--warmup", "1", "--min-iterations", "3", "--min-duration", "0", "--duration", "0"]


class Config:
    """One configuration: its artifact and what each side measured (a plain class: the smoke tests load this
    script without registering it as a module, which dataclasses need)."""

    def __init__(self, backend: str, precision: str) -> None:
        self.backend, self.precision = backend, precision
        self.artifact: Path | None = None
        self.side: dict[str, dict[str, Any]] = {"x86": {}, "arm64": {}}

    @property
    def name(self) -> str:
        """'ncnn-fp32'."""
        return f"{self.backend}-{self.precision}"


def make_artifacts(configs: list[Config], model: Path, calib: str, calib_images: int, folder: Path) -> None:
    """Each config's artifact, made on x86 once (kept in `folder` and reused by a rerun)."""
    from converters.export import export
    from converters.int8 import Int8Options
    from runtimes.capabilities import get

    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "model.onnx"
    if not onnx.is_file():
        shutil.copyfile(model, onnx)
    for c in configs:
        precision = "fp32" if c.precision == "fp16" else c.precision  # ncnn fp16: the fp32 .param, fp16 switches
        if c.backend == "onnxruntime" and precision == "fp32":
            c.artifact = onnx
            continue
        out = folder / f"{c.backend}-{precision}{get(c.backend).suffix}"
        if not out.is_file():
            opts = Int8Options(calib=calib, calib_images=calib_images) if precision == "int8" else None
            t0 = time.monotonic()
            export(onnx, c.backend, out, precision, parity_images=2, int8=opts)
            log(f"artifact {out.name}: {time.monotonic() - t0:.0f} s")
        c.artifact = out


def run_args(c: Config, precisions: list[str], data: str, args: argparse.Namespace, out: Path) -> list[str]:
    """`run ...` of one artifact at its precisions (the same on both sides; --out differs)."""
    return ["run", "--profile", PROFILES[c.backend], "--backend", c.backend, "--precisions", ",".join(precisions),
            "--model", str(c.artifact), "--data", data, "--max-images", str(args.max_images),
            "--threads", str(args.threads), *SHORT_TIMING, "--out", str(out), "--overwrite"]


def run_both(configs: list[Config], data: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """`edgebench run` on x86 and under emulation for each artifact (its precisions in one run); fills
    `side[...]` with AP50-95, precision_used, status; returns wall seconds per side."""
    walls = {"x86": 0.0, "arm64": 0.0}
    groups: dict[Path, list[Config]] = {}
    for c in configs:
        groups.setdefault(c.artifact or Path(), []).append(c)
    for members in groups.values():
        first = members[0]
        for side in ("x86", "arm64"):
            out = work / side / first.name
            inner = run_args(first, [m.precision for m in members], data, args, out)
            cmd = inner if side == "x86" else ["emulate", "--arch", "arm64", "--cpu", args.cpu, "--", *inner]
            t0 = time.monotonic()
            proc = bench_cli(cmd, work / side / f"{first.name}.log")
            walls[side] += time.monotonic() - t0
            log(f"{side} {first.name}: exit {proc} in {time.monotonic() - t0:.0f} s")
            read_report(out / "report.json", members, side)
    return walls


def bench_cli(cmd: list[str], log_file: Path) -> int:
    """`python -m bench CMD` of this checkout, output to `log_file`; its exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as fh:
        return subprocess.run([sys.executable, "-m", "bench", *cmd], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                              check=False).returncode


def read_report(path: Path, members: list[Config], side: str) -> None:
    """Each member's row of a run report: AP50-95, precision_used, status and error."""
    rows = json.loads(path.read_text())["results"] if path.is_file() else []
    for c in members:
        row = next((r for r in rows if r["backend"] == c.backend and r["precision"] == c.precision), None)
        if row is None:
            c.side[side].update(status="no report", error=f"see {path.parent}.log")
            continue
        ap = (row.get("accuracy") or {}).get("AP")
        c.side[side].update(status=row["status"], error=row.get("error"), precision_used=row.get("precision_used"),
                            ap=ap)


def detect_both(configs: list[Config], data: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Detections and raw outputs of every config, one process per side (bench.emulate.detect)."""
    from bench.emulate.forward import data_binds
    from bench.emulate.runner import run_python

    walls = {}
    for side in ("x86", "arm64"):
        job = {"data": data, "split": "val", "limit": args.max_images, "threads": args.threads,
               "out": str(work / "detect" / side),
               "configs": [{"name": c.name, "artifact": str(c.artifact), "backend": c.backend,
                            "precision": c.precision} for c in configs]}
        job_file = work / f"detect-{side}.json"
        job_file.write_text(json.dumps(job))
        t0 = time.monotonic()
        if side == "x86":
            code = subprocess.run([sys.executable, "-m", "bench.emulate.detect", str(job_file)], cwd=ROOT,
                                  check=False, stdout=subprocess.DEVNULL).returncode
        else:
            binds = [(work, True), *((b, False) for b in data_binds(data) if not b.is_relative_to(work))]
            code = run_python(["-m", "bench.emulate.detect", str(job_file)], binds, cpu=args.cpu, log=log)
        walls[side] = time.monotonic() - t0
        log(f"detect {side}: exit {code} in {walls[side]:.0f} s")
    return walls


def score(configs: list[Config], data: str, limit: int, work: Path) -> None:
    """Agreement mAP of the ARM detections against x86's, and raw-output parity, into `side['arm64']`."""
    from bench.sweep.agreement import DEFAULT_REFERENCE_CONF, reference_gt
    from edge_sdk.coco_eval import evaluate
    from edge_sdk.datasets import load_dataset

    ds = load_dataset(data, "val")
    names = {ds.category_ids[k]: v for k, v in ds.names.items()}
    for c in configs:
        arm = load_detect(work / "detect" / "arm64", c.name)
        ref_name = c.name if c.precision != "fp16" else f"{c.backend}-fp32"
        x86 = load_detect(work / "detect" / "x86", ref_name)
        if "detections" not in arm or "detections" not in x86:
            c.side["arm64"]["agreement_error"] = arm.get("error") or x86.get("error") or "no detections"
            continue
        ids = {int(s.image_id) for s in ds.samples[:limit]}
        gt = reference_gt(ds, x86["detections"], DEFAULT_REFERENCE_CONF, ids)
        result = evaluate(gt, arm["detections"], names=names)
        c.side["arm64"].update(agreement=float(result.stats["AP"]), reference=ref_name,
                               raw=raw_parity(work / "detect", c.name, ref_name, len(ds.names)))
        c.side["arm64"]["detect_used"] = arm.get("precision_used")
        c.side["x86"]["detect_used"] = x86.get("precision_used")


def load_detect(folder: Path, name: str) -> dict[str, Any]:
    """A config's detect output (bench.emulate.detect), or {'error': ...} when it has none."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {"error": f"no {path}"}


def raw_parity(folder: Path, arm_name: str, x86_name: str, nc: int) -> tuple[float, float] | None:
    """(boxes max abs, scores max abs) of the raw outputs, arm64 vs x86; None without both."""
    a, b = folder / "arm64" / f"{arm_name}.npz", folder / "x86" / f"{x86_name}.npz"
    if not (a.is_file() and b.is_file()):
        return None
    with np.load(a) as fa, np.load(b) as fb:
        return split_diff(np.asarray(fa["out0"], np.float64), np.asarray(fb["out0"], np.float64), nc)


def split_diff(a: np.ndarray, b: np.ndarray, nc: int) -> tuple[float, float]:
    """max |a - b| over the box channels (first 4) and the class-score channels of a (1, 4+nc, A) or
    (1, A, 4+nc) output."""
    if a.shape != b.shape:
        return float("inf"), float("inf")
    axis = a.ndim - 1 if a.shape[-1] == 4 + nc else 1
    diff = np.abs(a - b)
    return float(np.take(diff, range(4), axis=axis).max()), float(np.take(diff, range(4, 4 + nc), axis=axis).max())


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def render(configs: list[Config], args: argparse.Namespace, walls: dict[str, float], calib: str) -> str:
    """The Markdown block: the table, what it was run on, and the command."""
    lines = [f"Model: `{args.model_label}`; data: `{args.data_label}`, first {args.max_images} val images; int8 "
             f"calibration: `{calib}` ({args.calib_images} images), on x86, the same int8 artifact on both sides; "
             f"{args.threads} threads; arm64: `QEMU_CPU={args.cpu}`.", "",
             "| configuration | AP50-95 x86 | AP50-95 arm64 | agreement mAP (arm64 vs x86) | raw boxes max abs (px) "
             "| raw scores max abs | precision_used x86 / arm64 |", "|---|---:|---:|---:|---:|---:|---|"]
    lines += [row(c) for c in configs]
    from edge_sdk.host import host_facts

    h = host_facts()
    lines += ["", "Agreement mAP: AP50-95 of the arm64 detections with x86's detections of the same configuration "
              "(score >= 0.25) as ground truth (1.0: the same detections). Raw: the first output on one fixed "
              "input (bench.emulate.probe), arm64 minus x86, boxes in pixels, scores 0..1. `*`: x86 does not run "
              "this configuration (ncnn's fp16 switches do nothing there), set against x86 fp32 of the same "
              "artifact.",
              f"Wall time: x86 {walls.get('x86', 0) / 60:.1f} min, arm64 under emulation "
              f"{walls.get('arm64', 0) / 60:.1f} min (runs and detection passes; busy shared host).",
              f"Machine: shared {h['physical_cores']}-core {h['cpu_model']} (Zen 4) VM; qemu-user-static "
              f"{qemu_version()}; {date_line()}; command: `python benchmarks/arm64_parity.py "
              f"{' '.join(sys.argv[1:])}`"]
    return "\n".join(lines)


def row(c: Config) -> str:
    x86, arm = c.side["x86"], c.side["arm64"]
    star = "*" if arm.get("reference", c.name) != c.name else ""
    raw = arm.get("raw")
    raw_cells = f"{raw[0]:.3g}{star} | {raw[1]:.2g}{star}" if raw else "- | -"
    agree = f"{arm['agreement']:.4f}{star}" if "agreement" in arm else "-"
    return (f"| {c.backend} {c.precision} | {ap_cell(x86)} | {ap_cell(arm)} | {agree} | {raw_cells} "
            f"| {x86.get('precision_used') or '-'} / {arm.get('precision_used') or '-'} |")


def ap_cell(side: dict[str, Any]) -> str:
    if side.get("ap") is not None:
        return f"{side['ap']:.4f}"
    return str(side.get("status") or "-")


def qemu_version() -> str:
    from bench.emulate.host import qemu_version as version

    return version()


def date_line() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def write_into(path: Path, text: str, block: str | None) -> None:
    mark = f"<!-- {MARK}:{block} -->" if block else f"<!-- {MARK} -->"
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(mark) + ".*?" + re.escape(mark), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path} has no pair of {mark} markers")
    path.write_text(pattern.sub(lambda _: f"{mark}\n{text}\n{mark}", doc), encoding="utf-8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=None, help="ONNX (default: the bundled model)")
    parser.add_argument("--data", default=None, help="data.yaml (default: /tmp/eb-synth's or the bundled val set)")
    parser.add_argument("--calib", default=None, help="int8 calibration (default: the bundled model's train split)")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--max-images", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu", default="cortex-a76")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--work", default=None, help="folder for artifacts and reports (default /tmp/arm64-parity/"
                                                     "MODEL; a rerun reuses its artifacts)")
    parser.add_argument("--skip-runs", action="store_true", help="reuse the reports already in --work")
    parser.add_argument("--write", default=None, help="replace the marked block of this Markdown file")
    parser.add_argument("--block", default=None, help="the <!-- arm64-parity:BLOCK --> pair")
    return parser.parse_args()


def main() -> None:
    from bench.sweep.defaults import default_calibration, default_data, default_model

    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("error: emulation needs root (run with sudo)")
    model = Path(args.model) if args.model else default_model()
    if args.calib is None and args.model:
        raise SystemExit("error: --calib is needed for a model other than the bundled one")
    calib = args.calib or f"{default_calibration()}:train"
    data = str(Path(args.data or default_data()).resolve())
    args.model_label = args.model or "edge_sdk/assets/default_model.onnx (bundled)"
    args.data_label = args.data or data
    work = Path(args.work or f"/tmp/arm64-parity/{model.stem}").resolve()
    configs = [Config(*spec.split(":")) for spec in args.configs]
    make_artifacts(configs, model, calib, args.calib_images, work / "artifacts")
    walls = {"x86": 0.0, "arm64": 0.0}
    if not args.skip_runs:
        walls = run_both(configs, data, args, work)
    else:
        for c in configs:
            for side in ("x86", "arm64"):
                group = next(g for g in configs if g.artifact == c.artifact)
                read_report(work / side / group.name / "report.json", [c], side)
    detect_walls = detect_both(configs, data, args, work)
    walls = {k: walls[k] + detect_walls.get(k, 0.0) for k in walls}
    score(configs, data, args.max_images, work)
    text = render(configs, args, walls, calib)
    print(text)
    (work / "table.md").write_text(text + "\n")
    if args.write:
        write_into(Path(args.write), text, args.block)


if __name__ == "__main__":
    main()
