"""edge_sdk: the app-facing API. Needs numpy, opencv and one engine; never torch."""
from edge_sdk.decode import DecodeConfig
from edge_sdk.detections import Detections
from edge_sdk.detector import Detector
from edge_sdk.frames import read_image, stream
from edge_sdk.letterbox import Letterbox, preprocess
from edge_sdk.meta import ModelMeta
from runtimes.errors import EdgebenchError

__all__ = [
    "DecodeConfig",
    "Detections",
    "Detector",
    "EdgebenchError",
    "Letterbox",
    "ModelMeta",
    "preprocess",
    "read_image",
    "stream",
]
