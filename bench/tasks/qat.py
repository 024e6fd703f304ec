"""`edgebench qat`: resolve the model, data and calibration images, run trainer.qat.fit_qat, check the exported
Q/DQ ONNX against the fake-quant model, and say how to run it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sweep.defaults import default_model, synth_settings
from calibration.dataset import CalibrationSet
from edge_sdk.cachedir import cache_dir
from edge_sdk.meta import ModelMeta
from runtimes.errors import InputError

#: Images of the export's parity check: enough detections (~80 on the bundled model) that one class flipped by
#: int8 rounding noise does not decide it (4 images gave 18 detections: one flip fell under 0.95 agreement).
PARITY_IMAGES = 16
#: The bundled model's QAT data when none is given: its synthetic training set (the same generator and seed).
DEFAULT_TRAIN_IMAGES = 2000


@dataclass
class QatRequest:
    """What `edgebench qat` was asked (None: the bundled model / its synthetic data / the data's train split)."""

    model: str | None
    data: str | None
    target: str
    exclude: str
    epochs: int
    batch: int
    lr0: float | None
    freeze_bn_epoch: int | None  # None: 1, or 0 for a model lifted from an ONNX (its BN is folded)
    freeze_quantizers_epoch: int
    calib: str | None
    calib_images: int
    out_dir: str
    resume: str | None
    workers: int
    seed: int
    cache: bool
    limit_train_batches: int | float | None
    limit_val_batches: int | float | None
    progress: bool


def default_training_data(meta: dict[str, Any] | None) -> Path:
    """data.yaml of the synthetic train+val set the bundled model was made with; generated once into the cache."""
    from edge_sdk.synth import generate

    s = synth_settings(meta)
    out = cache_dir() / f"synth-seed{s['seed']}-{s['imgsz']}px-{DEFAULT_TRAIN_IMAGES}-{s['val']}"
    if not (out / "data.yaml").is_file():
        generate(out, train=DEFAULT_TRAIN_IMAGES, val=s["val"], imgsz=s["imgsz"], seed=s["seed"])
    return out / "data.yaml"


def model_path(model: str | None) -> Path:
    """The model QAT starts from (default: the bundled one), checked to be a file it can start from."""
    path = Path(model) if model else default_model()
    if path.suffix not in (".ckpt", ".onnx"):
        raise InputError(f"--model {path}: QAT starts from one of our checkpoints (.ckpt) or an ONNX our trainer "
                         f"exported, not a '{path.suffix}' file")
    if not path.is_file():
        raise InputError(f"--model {path}: no such file")
    return path


def source_checkpoint(model: str | None, out_dir: Path) -> tuple[Path, dict[str, Any] | None]:
    """A checkpoint to start from: `model` itself (.ckpt), or the weights of an ONNX our trainer exported
    (the bundled one by default) lifted into `out_dir`/source.ckpt. Also the ONNX metadata when there was one."""
    path = model_path(model)
    if path.suffix == ".ckpt":
        return path, None
    import onnx

    from trainer.lift import lift_checkpoint

    proto = onnx.load(str(path), load_external_data=False)
    meta = ModelMeta.from_props({p.key: p.value for p in proto.metadata_props})
    return lift_checkpoint(path, out_dir / "source.ckpt"), {"extra": meta.extra}


def calibration(req: QatRequest, data: Path, imgsz: int) -> CalibrationSet:
    """The range-initialisation images: --calib, else the data's train split; never the val images."""
    from calibration.dataset import build_calibration_set
    from edge_sdk.datasets import load_dataset

    val = load_dataset(data, "val").image_paths()
    source = req.calib or f"{data}:train"
    return build_calibration_set(source, imgsz, limit=req.calib_images, eval_images=val)


def run_qat(req: QatRequest) -> list[str]:
    """Run QAT; returns the lines to print (epochs, scores, artifact, parity, next commands)."""
    out = Path(req.out_dir)
    model_path(req.model)
    if req.data is None and req.model is not None:
        raise InputError("--data is required for a model other than the bundled one (QAT trains on its data)")
    if req.data is not None and not Path(req.data).exists():
        raise InputError(f"--data {req.data}: no such file or folder")
    ckpt, meta = source_checkpoint(req.model, out)
    from trainer.checkpoint import load_detector
    from trainer.qat import QatConfig, fit_qat
    from trainer.schedule import OptimConfig
    data = Path(req.data) if req.data else default_training_data(meta)
    imgsz = _check_scheme(req, load_detector(ckpt))
    calib_set = calibration(req, data, imgsz)
    calib = list(calib_set.arrays())
    cfg = QatConfig(data=str(data), epochs=req.epochs, batch=req.batch, workers=req.workers, out_dir=str(out),
                    seed=req.seed, cache=req.cache, resume=req.resume, progress=req.progress,
                    limit_train_batches=req.limit_train_batches, limit_val_batches=req.limit_val_batches,
                    optim=OptimConfig(lr0=req.lr0), checkpoint=str(ckpt), target=req.target,
                    exclude=req.exclude, calib_images=len(calib), freeze_bn_epoch=_freeze_bn(req, meta),
                    freeze_quantizers_epoch=req.freeze_quantizers_epoch)
    result = fit_qat(cfg, calib)
    lines = [f"QAT for {req.target}: {result.epochs_run} epochs in {result.seconds:.0f} s; "
             f"{len(result.scheme.ignored)} ops float"]
    lines += [f"epoch {int(h['epoch'])}: val mAP50-95 {h['val/mAP50-95']:.4f} (int8 simulated)" for h in result.history]
    lines += [f"best: {result.best}", f"last: {result.last}"]
    if result.onnx is not None and result.best is not None:
        from bench.tasks.qat_check import fake_quant_parity

        lines.append(f"Q/DQ ONNX (learned scales): {result.onnx} ({result.fold.int8_weights if result.fold else 0} "
                     f"int8 convolutions)")
        from bench.tasks.qat_targets import target_artifact

        lines.append(fake_quant_parity(result.best, result.onnx, calib[:PARITY_IMAGES]).summary())
        lines += target_artifact(req.target, result.onnx, calib_set)
        lines.append(f"next: edgebench run --model {result.onnx} --backend {_run_backend(req.target)} "
                     f"--data {data}")
    return lines


def _check_scheme(req: QatRequest, loaded: Any) -> int:
    """Refuse a bad --exclude before the calibration images are read; returns the model's input size."""
    import torch

    from trainer.qat_model import op_names, resolve_scheme

    example = torch.zeros(1, 3, loaded.imgsz, loaded.imgsz)
    resolve_scheme(req.target, req.exclude, op_names(loaded.model.eval(), example))
    return int(loaded.imgsz)


def _freeze_bn(req: QatRequest, lifted: dict[str, Any] | None) -> int:
    """BN trains one epoch by default; a lifted model's BN layers are identities (the statistics are folded
    into the convolutions), which batch statistics would wreck, so they are frozen from the start."""
    if req.freeze_bn_epoch is not None:
        return req.freeze_bn_epoch
    return 0 if lifted is not None else 1


def _run_backend(target: str) -> str:
    """Where the Q/DQ ONNX runs as it is (TensorRT builds it on the device; the others convert it)."""
    return "onnxruntime" if target in ("tensorrt", "tflite", "ncnn") else target
