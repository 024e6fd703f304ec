"""Deterministic synthetic object-detection data (numpy + OpenCV only).

Ten classes of shapes and glyphs (`CLASS_NAMES`) with random colour, size (a few pixels to
~40% of the image), aspect, rotation and partial occlusion, on textured backgrounds with
clutter that is not a class, blur, noise and lighting changes; about 5% of images are empty.
Image `index` of a split is drawn from its own generator seeded by (seed, split, index), so
any image can be regenerated alone (`render_image`) and train and val never share images.
`generate` writes the Ultralytics layout plus COCO ground truth for val (see `writer`).
"""
from __future__ import annotations

from edge_sdk.synth.compose import Scene, render_image
from edge_sdk.synth.shapes import CLASS_NAMES
from edge_sdk.synth.writer import check_output, generate, resolve_classes

__all__ = ["CLASS_NAMES", "Scene", "check_output", "generate", "render_image", "resolve_classes"]
