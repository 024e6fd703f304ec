"""What a run may score: the data set's classes against the model's, the bundled data set only for
the bundled model, and the content hash of what was scored."""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.sweep.defaults import default_data, default_model
from edge_sdk.datasets import Dataset, Sample
from edge_sdk.hashing import sha256_of
from runtimes.capabilities import files_beside
from runtimes.errors import InputError, ModelLoadError

__all__ = ["artifact_sha256", "check_classes", "data_for", "data_sha256", "is_bundled_model"]

_SHOWN_NAMES = 6


def check_classes(dataset: Dataset, meta: Mapping[str, Any], allow: bool) -> list[str]:
    """InputError when a labelled data set's class names or count differ from the model's (by class
    index); with `allow`, a note instead. A model without class names is not checked."""
    model_names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    if not dataset.labelled or not model_names:
        return []
    data_names = {int(k): str(v) for k, v in dataset.names.items()}
    if data_names == model_names:
        return []
    what = _difference(str(dataset.source), data_names, model_names)
    if not allow:
        raise InputError(f"{what}: its mAP would score the wrong classes; use a data set with the "
                         "model's classes, or pass --allow-class-mismatch to score by class index anyway")
    return [f"class mismatch allowed (--allow-class-mismatch): {what}; classes are scored by index"]


def _difference(source: str, data_names: Mapping[int, str], model_names: Mapping[int, str]) -> str:
    """What differs: the class counts (with the first names of each), or, for equal counts, the first
    class index whose names differ."""
    if len(data_names) != len(model_names):
        return (f"data set {source} has {len(data_names)} classes ({_names(data_names)}) but the "
                f"model has {len(model_names)} ({_names(model_names)})")
    index = min(k for k in {*data_names, *model_names} if data_names.get(k) != model_names.get(k))
    return (f"the class names differ: data set {source} has class {index} "
            f"'{data_names.get(index, '<none>')}' where the model has '{model_names.get(index, '<none>')}'")


def _names(names: Mapping[int, str]) -> str:
    shown = [f"{k}:{v}" for k, v in sorted(names.items())[:_SHOWN_NAMES]]
    return ", ".join(shown) + (", ..." if len(names) > _SHOWN_NAMES else "")


def is_bundled_model(model: Path, meta: Mapping[str, Any] | None = None) -> bool:
    """Whether `model` is the bundled default model (same content), or an artifact converted from it
    (its metadata `meta` records a conversion and the bundled model's source hash); False when none is
    bundled."""
    try:
        bundled = default_model()
    except ModelLoadError:
        return False
    if model.resolve() == bundled.resolve() or sha256_of(model) == sha256_of(bundled):
        return True
    return meta is not None and _converted_from(meta, bundled)


def _converted_from(meta: Mapping[str, Any], source: Path) -> bool:
    """Whether `meta` (ModelMeta as a dict) is a converted artifact's whose recorded source hash is
    `source`'s; False when it records none."""
    recorded = meta.get("source_hash")
    converted = bool((meta.get("extra") or {}).get("converted_from"))
    return converted and bool(recorded) and recorded == _source_hash(str(source))


@functools.lru_cache(maxsize=4)
def _source_hash(onnx_path: str) -> str | None:
    """The source hash an ONNX's metadata records (ModelMeta.source_hash), None when it has none."""
    import onnx

    from edge_sdk.meta import ModelMeta

    proto = onnx.load(onnx_path, load_external_data=False)
    return ModelMeta.from_props({p.key: p.value for p in proto.metadata_props}).source_hash


def data_for(data: str | None, model: Path, meta: Mapping[str, Any], reference: bool) -> tuple[Path | str, str | None]:
    """The data set to load and, when the bundled synthetic set stands in for a model it does not
    belong to, the note saying its images time the model but its labels are not scored."""
    if data:
        return data, None
    path = default_data(meta)
    if is_bundled_model(model, meta):
        return path, None
    scored = ("each configuration is scored against --reference's detections on its images (agreement "
              "mAP)" if reference else "latency only, no accuracy")
    return path, (f"no --data: the bundled synthetic data set belongs to the bundled model, not to "
                  f"{model.name}, so its labels are not used ({scored}); pass --data DATA for mAP")


def data_sha256(samples: Sequence[Sample], labelled: bool) -> str:
    """sha256 over the scored images' file digests and, when labelled, their boxes and classes, in
    sample order: the same images and labels give the same hash wherever they live."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{sha256_of(s.image_path)}\n".encode())
        if labelled:
            boxes = ";".join(f"{int(c)}:" + ",".join(f"{v:.2f}" for v in box)
                             for c, box in zip(s.class_ids.tolist(), s.boxes_xyxy.tolist(), strict=True))
            h.update(f"{boxes}\n".encode())
    return h.hexdigest()


def artifact_sha256(path: str | Path) -> str:
    """sha256 of a model artifact: the file's own digest, or with the files kept beside it (the .bin
    of OpenVINO IR and ncnn) the digest over all of them (bench.measure.environment.sha256_of)."""
    beside = [p for p in files_beside(path) if p.is_file()]
    return sha256_of([path, *beside]) if beside else sha256_of(path)
