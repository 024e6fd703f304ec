"""Letterbox preprocessing: resize keeping aspect ratio, pad to the model size, BGR->RGB NCHW."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtimes.errors import InputError

PAD_VALUE = 114
_255 = np.float32(255.0)


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
        out = np.array(xyxy, np.float32).reshape(-1, 4)
        out -= np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        out /= np.float32(self.scale)
        if clip:  # (fancy-indexed `out=` targets are copies, so clip with per-column bounds instead)
            h, w = self.image_size
            np.clip(out, 0, np.array([w, h, w, h], np.float32), out=out)
        return out


def letterbox_geometry(image_size: tuple[int, int], input_size: tuple[int, int]) -> Letterbox:
    """Scale and centred padding for an image of (h, w) into an input of (H, W)."""
    h, w = image_size
    H, W = input_size
    scale = min(H / h, W / w)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    dw, dh = (W - new_w) / 2, (H - new_h) / 2
    return Letterbox(scale, int(round(dw - 0.1)), int(round(dh - 0.1)), (h, w), (H, W))


def _resize(image: np.ndarray, lb: Letterbox) -> np.ndarray:
    """The frame resized by the letterbox scale (no padding)."""
    h, w = image.shape[:2]
    new_w, new_h = int(round(w * lb.scale)), int(round(h * lb.scale))
    if (new_w, new_h) == (w, h):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def letterbox_image(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The padded HxWx3 image and its geometry."""
    check_frame(image)
    lb = letterbox_geometry(image.shape[:2], input_size)
    resized = _resize(image, lb)
    H, W = input_size
    new_h, new_w = resized.shape[:2]
    right, bottom = W - new_w - lb.pad_x, H - new_h - lb.pad_y
    padded = cv2.copyMakeBorder(resized, lb.pad_y, bottom, lb.pad_x, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return padded, lb


class InputBuffer:
    """A reusable float32 input tensor for a stream of frames: its pad border is written only
    when the letterbox geometry changes. Not thread-safe: one buffer per concurrent caller."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None
        self._content: tuple[int, ...] | None = None  # (y, x, h, w) whose border is filled

    def take(self, shape: tuple[int, ...], content: tuple[int, ...]) -> tuple[np.ndarray, bool]:
        """The buffer for `shape`, and whether its border already matches `content`."""
        if self.array is None or self.array.shape != shape:
            self.array, self._content = np.empty(shape, np.float32), None
        ready = self._content == content
        self._content = content
        return self.array, ready


def preprocess(image: np.ndarray, input_size: int | tuple[int, int], dtype: str = "float32",
               layout: str = "nchw", buffer: InputBuffer | None = None) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 frame -> (1, 3, H, W) RGB in [0, 1] (or NHWC), plus the letterbox geometry.

    Pixels are divided by 255 in float32 (as `x / 255.0` does); the resized frame is written
    straight into the padded tensor, one colour plane at a time. With `buffer`, the tensor is
    written into (and returned as) that buffer's array, which the next call overwrites.
    `input_size` is (height, width), or one int for a square input.
    """
    if layout not in ("nchw", "nhwc"):
        raise InputError(f"layout must be 'nchw' or 'nhwc', got '{layout}'")
    check_frame(image)
    input_size = input_hw(input_size)
    lb = letterbox_geometry(image.shape[:2], input_size)
    resized = _resize(image, lb)
    H, W = input_size
    h, w = resized.shape[:2]
    y, x = lb.pad_y, lb.pad_x
    shape = (1, 3, H, W) if layout == "nchw" else (1, H, W, 3)
    blob, ready = buffer.take(shape, (y, x, h, w)) if buffer else (np.empty(shape, np.float32), False)
    if layout == "nchw":
        if not ready:
            _fill_border(blob[0].transpose(1, 2, 0), y, x, h, w)
        planes = cv2.split(resized)
        for c in range(3):  # BGR planes -> RGB channels
            np.divide(planes[2 - c], _255, out=blob[0, c, y:y + h, x:x + w], dtype=np.float32)
    else:
        if not ready:
            _fill_border(blob[0], y, x, h, w)
        np.divide(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), _255, out=blob[0, y:y + h, x:x + w], dtype=np.float32)
    if dtype != "float32":
        blob = blob.astype(dtype)
    return blob, lb


def _fill_border(hwc: np.ndarray, y: int, x: int, h: int, w: int) -> None:
    """Set everything outside the [y:y+h, x:x+w] content area of an HxWxC view to the pad value."""
    pad = np.float32(PAD_VALUE) / _255
    hwc[:y] = pad
    hwc[y + h:] = pad
    hwc[y:y + h, :x] = pad
    hwc[y:y + h, x + w:] = pad


def input_hw(size: object) -> tuple[int, int]:
    """A model input size as (height, width): an int means a square; InputError for anything but a
    positive int or a pair of them."""
    if _positive_int(size):
        return int(size), int(size)  # type: ignore[call-overload]  # _positive_int: an int
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_positive_int(v) for v in size):
        return int(size[0]), int(size[1])
    raise InputError(f"input size must be a positive int or (height, width), got {size!r}")


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value > 0)


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
