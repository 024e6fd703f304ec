"""edge_sdk: the app-facing API. Needs numpy, opencv and one engine; never torch.

Names are resolved lazily so that `runtimes` can import `edge_sdk.errors` without a cycle.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DecodeConfig": "edge_sdk.decode",
    "Detections": "edge_sdk.detections",
    "Detector": "edge_sdk.detector",
    "EdgebenchError": "edge_sdk.errors",
    "Letterbox": "edge_sdk.preprocess",
    "ModelMeta": "edge_sdk.meta",
    "preprocess": "edge_sdk.preprocess",
    "read_image": "edge_sdk.stream",
    "stream": "edge_sdk.stream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_sdk' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
