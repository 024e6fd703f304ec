"""fp32 vs PTQ vs QAT on one int8 scheme: same quantizer placement, same backend, same val images.

    python benchmarks/qat_accuracy.py [--model M.ckpt|M.onnx] --data data.yaml [--target tflite] [--epochs 5]
        [--run DIR] [--reuse] [--max-images N] [--write docs/quantization.md --block qat]

PTQ row: the target's quantizers (trainer.qat_model, NNCF) with ranges from the calibration images and no
training, exported like the QAT model; QAT row: `edgebench qat` (bench.tasks.qat.run_qat) from the same start.
Both Q/DQ ONNX files are scored on ONNX Runtime with the shared evaluator, next to the fp32 model. `--reuse`
scores an earlier run in --run instead of training again (its wall time is then read from its log).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import _repo  # noqa: F401  (puts the checkout on sys.path)
from int8_accuracy import write_into  # the same <!-- int8-bench:NAME --> blocks of docs/quantization.md

from bench.tasks.qat import QatRequest, calibration, run_qat, source_checkpoint
from edge_sdk.host import host_facts
from trainer.checkpoint import load_detector
from trainer.export import export_onnx, model_meta
from trainer.qat import QatConfig, prepare
from trainer.qat_export import export_qat_onnx
from trainer.qat_model import exact_dfl_grid
from trainer.val import validate

TFLITE_NOTE = "; and both as full-integer TFLite on LiteRT"


def score(path: Path, data: str, limit: int | None, backend: str = "onnxruntime") -> tuple[float, float]:
    r = validate(path, data, backend=backend, limit=limit)
    return float(r.stats["AP"]), float(r.stats["AP50"])


def request(args: argparse.Namespace) -> QatRequest:
    return QatRequest(args.model, args.data, args.target, args.exclude, args.epochs, args.batch, args.lr0,
                      args.freeze_bn, args.freeze_quantizers, None, args.calib_images, args.run, None, 2, args.seed,
                      True,
                      None, None, False)


def ptq_artifact(args: argparse.Namespace, ckpt: Path, out: Path) -> tuple[Path, bool]:
    """The same scheme with calibrated ranges and no training, exported like the QAT model; and whether its
    int8 DFL got the exact grid (--exact-dfl)."""
    loaded = load_detector(ckpt)
    calib = list(calibration(request(args), Path(args.data), loaded.imgsz).arrays())
    cfg = QatConfig(data=args.data, checkpoint=str(ckpt), target=args.target, exclude=args.exclude)
    quantized, scheme = prepare(cfg, loaded, calib)
    exact = bool(args.exact_dfl) and exact_dfl_grid(quantized)
    meta = model_meta(loaded, loaded.imgsz)
    extra = {"quantization": {"method": "ptq", **scheme.to_dict()}}
    return export_qat_onnx(quantized, out, loaded.imgsz, meta, extra)[0], exact


def qat_run(args: argparse.Namespace) -> tuple[Path, float, list[str]]:
    """(best-qat.onnx, wall seconds, the command's lines) — trained now, or read back with --reuse."""
    run = Path(args.run)
    log = run / "qat-lines.txt"
    if args.reuse:
        lines = log.read_text(encoding="utf-8").splitlines()
        secs = float(re.search(r"in (\d+) s", lines[0]).group(1))  # type: ignore[union-attr]
        return run / "weights" / "best-qat.onnx", secs, lines
    start = time.perf_counter()
    lines = run_qat(request(args))
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run / "weights" / "best-qat.onnx", time.perf_counter() - start, lines


def tflite_rows(args: argparse.Namespace, models: dict[str, Path], base: float) -> list[str]:
    """The same two models as full-integer TFLite (converters.qat_tflite: learned scales kept), on LiteRT."""
    from calibration.dataset import build_calibration_set
    from converters.qat_tflite import qat_to_tflite

    size = int(onnx_size(models["int8-qat"]))
    calib = build_calibration_set(f"{args.data}:train", size, limit=args.calib_images)
    out = []
    for label, path in models.items():
        res = qat_to_tflite(path, path.with_suffix(".tflite"), calib)
        ap = score(path.with_suffix(".tflite"), args.data, args.max_images, "tflite")
        out.append(f"| {label}, full-integer TFLite ({len(res.float_ops)} float ops) | {ap[0]:.4f} | "
                   f"{100 * (ap[0] - base):+.2f} | {ap[1]:.4f} | {path.with_suffix('.tflite').name} |")
        print(f"  {label} tflite: {ap[0]:.4f}", file=sys.stderr)
    return out


def onnx_size(path: Path) -> int:
    """The input height of an ONNX model."""
    import onnx

    return int(onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[2].dim_value)


def rows(args: argparse.Namespace) -> list[str]:
    run = Path(args.run)
    ckpt, _ = source_checkpoint(args.model, run)
    fp32 = export_onnx(ckpt, run / "fp32.onnx")
    ptq, exact = ptq_artifact(args, ckpt, run / "ptq.onnx")
    qat, secs, lines = qat_run(args)
    base = score(fp32, args.data, args.max_images)
    out = [f"| fp32 | {base[0]:.4f} | - | {base[1]:.4f} | - |"]
    results = {}
    for key, path in (("int8-ptq", ptq), ("int8-qat", qat)):
        ap = score(path, args.data, args.max_images)
        results[key] = ap[0]
        label = key + (", exact DFL grid" if exact and key == "int8-ptq" else "")
        out.append(f"| {label} (Q/DQ ONNX on ONNX Runtime) | {ap[0]:.4f} | {100 * (ap[0] - base[0]):+.2f} | "
                   f"{ap[1]:.4f} | {path.name} |")
        print(f"  {label}: {ap[0]:.4f}", file=sys.stderr)
    if args.tflite:
        out += tflite_rows(args, {"int8-ptq": ptq, "int8-qat": qat}, base[0])
    loss = base[0] - results["int8-ptq"]
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    gap = f"ends {100 * (base[0] - results['int8-qat']):.2f} points under fp32"
    if loss > 0:
        recovered = (results["int8-qat"] - results["int8-ptq"]) / loss
        verdict = f"QAT recovered **{100 * recovered:.0f}%** of the PTQ loss ({100 * loss:.2f} points) and {gap}"
    else:
        verdict = f"PTQ lost nothing here; QAT {gap}"
    history = "; ".join(f"{e.split(':')[0]}: {e.split('val mAP50-95 ')[1].split(' ')[0]}" for e in epochs)
    out += ["", f"{verdict}; {len(epochs)} epochs in {secs / 60:.1f} min (fine-tuning, range initialisation "
            f"and the export).", "", f"Per epoch (int8 simulated, the run's own validation): {history}"]
    return out


def ablation_rows(args: argparse.Namespace) -> list[str]:
    """PTQ only (the target's quantizers, calibrated ranges, no training), one row per --ptq-only exclusion:
    where the int8 loss of a scheme comes from."""
    run = Path(args.run)
    ckpt, _ = source_checkpoint(args.model, run)
    base = score(export_onnx(ckpt, run / "fp32.onnx"), args.data, args.max_images)
    out = [f"| fp32 | - | {base[0]:.4f} | - | {base[1]:.4f} |"]
    for i, exclude in enumerate(args.ptq_only):
        args.exclude = exclude
        path, exact = ptq_artifact(args, ckpt, run / f"ptq-{i}.onnx")
        ap = score(path, args.data, args.max_images)
        grid = ", DFL weights on an exact 1/8 grid" if exact else ""
        out.append(f"| int8-ptq{grid} | `{exclude}` | {ap[0]:.4f} | {100 * (ap[0] - base[0]):+.2f} | {ap[1]:.4f} |")
        print(f"  {exclude}: {ap[0]:.4f}", file=sys.stderr)
    return out


def render_ablation(body: list[str], args: argparse.Namespace) -> str:
    h = host_facts()
    head = [f"Model: {args.model or 'the bundled model'}; data: {args.data} (val split); target scheme: "
            f"{args.target}; calibration: {args.calib_images} images of its train split; PTQ only (no training), "
            "each Q/DQ ONNX scored on ONNX Runtime.", "",
            "| model | float ops (`--exclude`) | AP50-95 | change (points) | AP50 |", "|---|---|---:|---:|---:|"]
    tail = [f"Machine: {h['cpu_model']}, {h['physical_cores']} physical cores; Python {h['python']}; "
            f"command: `python benchmarks/qat_accuracy.py {' '.join(sys.argv[1:])}`"]
    return "\n".join(head + body + [""] + tail)


def render(body: list[str], args: argparse.Namespace) -> str:
    h = host_facts()
    head = [f"Model: {args.model or 'the bundled model'}; data: {args.data} (val split"
            f"{f', first {args.max_images} images' if args.max_images else ''}); target scheme: {args.target}, "
            f"exclude {args.exclude}; calibration: {args.calib_images} images of its train split; scored on ONNX "
            f"Runtime (the Q/DQ ONNX as exported){TFLITE_NOTE if args.tflite else ''}.", "",
            "| model | AP50-95 | change (points) | AP50 | artifact |", "|---|---:|---:|---:|---|"]
    tail = [f"Machine: {h['cpu_model']}, {h['physical_cores']} physical cores; Python {h['python']}; "
            f"command: `python benchmarks/qat_accuracy.py {' '.join(sys.argv[1:])}`"]
    return "\n".join(head + body + [""] + tail)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="our checkpoint or trainer-exported ONNX (default: bundled)")
    parser.add_argument("--data", required=True, help="data.yaml with train and val splits")
    parser.add_argument("--target", default="tflite")
    parser.add_argument("--exclude", default="auto")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr0", type=float, default=None, help="default: as edgebench qat")
    parser.add_argument("--freeze-bn", type=int, default=None, help="default: as edgebench qat")
    parser.add_argument("--freeze-quantizers", type=int, default=3)
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="the QAT run's seed (data order, augmentation)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--run", default="runs/qat-bench", help="the QAT run's folder")
    parser.add_argument("--reuse", action="store_true", help="score the run already in --run")
    parser.add_argument("--ptq-only", nargs="+", default=None, metavar="EXCLUDE",
                        help="no QAT: one PTQ row per exclusion (where a scheme's int8 loss comes from)")
    parser.add_argument("--exact-dfl", action="store_true",
                        help="PTQ rows: the int8 DFL's weights on a grid where 0..15 are exact (step 1/8)")
    parser.add_argument("--tflite", action="store_true", help="also both as full-integer TFLite on LiteRT")
    parser.add_argument("--write", default=None)
    parser.add_argument("--block", default="qat")
    args = parser.parse_args()
    text = render_ablation(ablation_rows(args), args) if args.ptq_only else render(rows(args), args)
    print(text)
    if args.write:
        write_into(Path(args.write), text, args.block)


if __name__ == "__main__":
    main()
