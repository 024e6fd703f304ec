"""Data set readers (Ultralytics data.yaml + YOLO txt, COCO json) with label validation.

numpy + opencv + pyyaml only; shared by bench, calibration and trainer.
"""
from __future__ import annotations

from edge_sdk.datasets.coco import load_coco
from edge_sdk.datasets.images import load_images
from edge_sdk.datasets.loader import load_dataset
from edge_sdk.datasets.types import Dataset, LabelIssue, Sample
from edge_sdk.datasets.yolo import IMAGE_SUFFIXES, label_path, load_yolo

__all__ = ["IMAGE_SUFFIXES", "Dataset", "LabelIssue", "Sample", "label_path", "load_coco",
           "load_dataset", "load_images", "load_yolo"]
