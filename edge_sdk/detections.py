"""Detections: one results type with named fields, never column positions."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Boxes in original-image pixels (x1, y1, x2, y2), their scores and class ids."""

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    names: Mapping[int, str] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)  # (height, width) of the original image

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, np.int64).reshape(-1)
        if not (len(self.xyxy) == len(self.scores) == len(self.class_ids)):
            raise ValueError("xyxy, scores and class_ids must have the same length")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        """Name of each detection's class (the id as text when unnamed)."""
        return [self.names.get(int(c), str(int(c))) for c in self.class_ids]

    def __getitem__(self, index: Any) -> Detections:
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index],
                          self.names, self.image_size)

    def to_list(self) -> list[dict[str, Any]]:
        """Plain dicts for JSON: box, score, class id and name."""
        return [
            {"xyxy": [round(float(v), 3) for v in box], "score": round(float(s), 5),
             "class_id": int(c), "class_name": n}
            for box, s, c, n in zip(self.xyxy, self.scores, self.class_ids, self.class_names, strict=False)
        ]

    def to_coco(self, image_id: int, category_ids: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
        """COCO results entries (bbox as x, y, w, h); class ids mapped through category_ids."""
        out = []
        for box, s, c in zip(self.xyxy.astype(np.float64), self.scores, self.class_ids, strict=False):
            cat = category_ids[int(c)] if category_ids is not None else int(c)
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append({"image_id": image_id, "category_id": cat,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
        return out
