"""Detections from a checkpoint in PyTorch, preprocessed and decoded exactly like edge_sdk.Detector."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edge_sdk.decode import DecodeConfig, decode
from edge_sdk.detections import Detections
from edge_sdk.frames import read_image
from edge_sdk.letterbox import preprocess
from trainer.checkpoint import LoadedModel


@torch.no_grad()
def detect(model: torch.nn.Module, frames: list[np.ndarray], imgsz: int, cfg: DecodeConfig,
           names: dict[int, str] | None = None) -> list[Detections]:
    """Letterbox each BGR frame, run the model in one batch, decode + NMS, rescale to the frame."""
    blobs, boxes = zip(*(preprocess(f, (imgsz, imgsz)) for f in frames), strict=False)
    out = model.eval()(torch.from_numpy(np.concatenate(blobs))).float().numpy()
    result = []
    for (xyxy, scores, cls), lb in zip(decode(out, "yolov8", cfg), boxes, strict=False):
        result.append(Detections(lb.to_original(xyxy, clip=True), scores, cls, names or {}, lb.image_size))
    return result


def checkpoint_detections(loaded: LoadedModel, samples: list, category_ids: dict[int, int], cfg: DecodeConfig,
                          imgsz: int | None = None, batch: int = 16,
                          progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """COCO results of a loaded checkpoint's model over the samples; progress(done, total) per batch."""
    size = int(imgsz or loaded.imgsz)
    out: list[dict] = []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        dets = detect(loaded.model, [read_image(s.image_path) for s in chunk], size, cfg, loaded.names)
        for s, d in zip(chunk, dets, strict=False):
            out.extend(d.to_coco(int(s.image_id), category_ids))
        if progress is not None:
            progress(start + len(chunk), len(samples))
    return out
