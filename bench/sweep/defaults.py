"""The bundled default model and its synthetic validation set (made on first use, deterministic)."""
from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from edge_sdk.cachedir import cache_dir
from runtimes.errors import ModelLoadError

DEFAULT_MODEL = "default_model.onnx"
#: Synthetic val set used when the model's metadata does not say how its data was made.
DEFAULT_SYNTH = {"seed": 0, "imgsz": 320, "val": 200}


def default_model() -> Path:
    """Path of the bundled default model (package data of edge_sdk)."""
    path = Path(str(resources.files("edge_sdk") / "assets" / DEFAULT_MODEL))
    if not path.is_file():
        raise ModelLoadError(
            "this build has no bundled default model (edge_sdk/assets/default_model.onnx); "
            "pass --model MODEL.onnx --data DATA"
        )
    return path


def synth_settings(meta: Mapping[str, Any] | None) -> dict[str, int]:
    """The synthetic-data settings a model was trained with (from its metadata), else the defaults."""
    extra = (meta or {}).get("extra") or {}
    given = extra.get("synth") or {}
    return {k: int(given.get(k, v)) for k, v in DEFAULT_SYNTH.items()}


def default_data(meta: Mapping[str, Any] | None = None) -> Path:
    """data.yaml of the synthetic val set matching the model; generated once into the cache."""
    from edge_sdk.synth import generate

    s = synth_settings(meta)
    out = cache_dir() / f"synth-val-seed{s['seed']}-{s['imgsz']}px-{s['val']}"
    if not (out / "data.yaml").is_file():
        generate(out, train=0, val=s["val"], imgsz=s["imgsz"], seed=s["seed"])
    return out / "data.yaml"


#: Calibration images made for the bundled model: from its own training split (never its val images).
DEFAULT_CALIB_IMAGES = 300


def default_calibration(meta: Mapping[str, Any] | None = None) -> Path:
    """data.yaml of the synthetic *train* split the bundled model was trained on (its first
    DEFAULT_CALIB_IMAGES images), generated once into the cache: the bundled model's calibration set."""
    from edge_sdk.synth import generate

    s = synth_settings(meta)
    out = cache_dir() / f"synth-train-seed{s['seed']}-{s['imgsz']}px-{DEFAULT_CALIB_IMAGES}"
    if not (out / "data.yaml").is_file():
        generate(out, train=DEFAULT_CALIB_IMAGES, val=0, imgsz=s["imgsz"], seed=s["seed"])
    return out / "data.yaml"
