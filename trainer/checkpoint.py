"""Read our Lightning checkpoints safely (weights_only) and rebuild the EMA detector from them."""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runtimes.errors import ModelLoadError
from trainer.model import ModelConfig, YoloDetector

#: Key under which our LightningModule stores what is needed to rebuild and describe the model.
CKPT_KEY = "edgebench"
CKPT_FORMAT = "edgebench-yolo"
CKPT_VERSION = 1


@dataclass
class LoadedModel:
    """A detector rebuilt from a checkpoint, with its class names, training size and file hash."""

    model: YoloDetector
    names: dict[int, str]
    imgsz: int
    sha256: str
    path: Path


def checkpoint_info(config: ModelConfig, names: dict[int, str], imgsz: int) -> dict[str, Any]:
    """The block stored in every checkpoint (plain types only, so weights_only loading works)."""
    return {"format": CKPT_FORMAT, "version": CKPT_VERSION, "model": config.to_dict(),
            "names": {int(k): str(v) for k, v in names.items()}, "imgsz": int(imgsz)}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) with one-line errors for missing, corrupt or foreign files."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"checkpoint not found: {p}")
    if not zipfile.is_zipfile(p):
        raise ModelLoadError(f"cannot read checkpoint {p}: not a PyTorch zip archive (truncated or another format)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{p} is not an edgebench checkpoint (it holds pickled Python objects, as "
                             f"checkpoints of other tools such as Ultralytics do; weights_only load refused: "
                             f"{first[:120]})") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read checkpoint {p}: {str(exc).splitlines()[0][:160]}") from exc
    info = ckpt.get(CKPT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(info, dict) or info.get("format") != CKPT_FORMAT:
        raise ModelLoadError(f"{p} is not an edgebench checkpoint (no '{CKPT_KEY}' block; made by another tool?)")
    if int(info.get("version", 0)) > CKPT_VERSION:
        raise ModelLoadError(f"{p} has checkpoint version {info.get('version')}, newer than this edgebench reads")
    return ckpt


def ema_state(ckpt: dict[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The detector weights from a checkpoint's state_dict: the EMA copy, else the live model."""
    state = ckpt.get("state_dict", {})
    prefix = "ema.module." if use_ema and any(k.startswith("ema.module.") for k in state) else "model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_detector(path: str | Path, use_ema: bool = True) -> LoadedModel:
    """Rebuild the detector (eval mode) from one of our checkpoints."""
    ckpt = read_checkpoint(path)
    info = ckpt[CKPT_KEY]
    model = YoloDetector(ModelConfig(**info["model"]))
    weights = ema_state(ckpt, use_ema)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit the stored model config: {str(exc).splitlines()[0]}") from exc
    names = {int(k): str(v) for k, v in info["names"].items()}
    return LoadedModel(model.eval(), names, int(info["imgsz"]), file_sha256(path), Path(path))
