"""Letterbox preprocessing: resize keeping aspect ratio, pad to the model size, BGR->RGB NCHW."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_sdk.errors import InputError

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was mapped into the model input: scale, then padding (left, top)."""

    scale: float
    pad_x: int
    pad_y: int
    image_size: tuple[int, int]  # original (height, width)
    input_size: tuple[int, int]  # model (height, width)

    def to_original(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map boxes from model-input pixels back to original-image pixels."""
        out = np.asarray(xyxy, np.float32).copy()
        out[:, [0, 2]] -= self.pad_x
        out[:, [1, 3]] -= self.pad_y
        out /= self.scale
        if clip:
            h, w = self.image_size
            np.clip(out[:, [0, 2]], 0, w, out=out[:, [0, 2]])
            np.clip(out[:, [1, 3]], 0, h, out=out[:, [1, 3]])
        return out


def letterbox_geometry(image_size: tuple[int, int], input_size: tuple[int, int]) -> Letterbox:
    """Scale and centred padding for an image of (h, w) into an input of (H, W)."""
    h, w = image_size
    H, W = input_size
    scale = min(H / h, W / w)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    dw, dh = (W - new_w) / 2, (H - new_h) / 2
    return Letterbox(scale, int(round(dw - 0.1)), int(round(dh - 0.1)), (h, w), (H, W))


def letterbox_image(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The padded HxWx3 image and its geometry."""
    check_frame(image)
    lb = letterbox_geometry(image.shape[:2], input_size)
    H, W = input_size
    h, w = image.shape[:2]
    new_w, new_h = int(round(w * lb.scale)), int(round(h * lb.scale))
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    right, bottom = W - new_w - lb.pad_x, H - new_h - lb.pad_y
    padded = cv2.copyMakeBorder(resized, lb.pad_y, bottom, lb.pad_x, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return padded, lb


def preprocess(image: np.ndarray, input_size: tuple[int, int], dtype: str = "float32",
               layout: str = "nchw") -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 frame -> (1, 3, H, W) RGB in [0, 1] (or NHWC), plus the letterbox geometry."""
    padded, lb = letterbox_image(image, input_size)
    if layout == "nchw":
        blob = cv2.dnn.blobFromImage(padded, 1.0 / 255.0, swapRB=True, ddepth=cv2.CV_32F)
    elif layout == "nhwc":
        blob = (cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).astype(np.float32) * (1.0 / 255.0))[None]
    else:
        raise InputError(f"layout must be 'nchw' or 'nhwc', got '{layout}'")
    if dtype != "float32":
        blob = blob.astype(dtype)
    return blob, lb


def check_frame(image: np.ndarray) -> None:
    """A frame must be an HxWx3 uint8 BGR array."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"frame must be HxWx3 (BGR), got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise InputError(f"frame must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError("frame is empty")
