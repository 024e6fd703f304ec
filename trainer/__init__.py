"""Trainer: YOLOv8-style detector, Lightning training, QAT (needs the `train` extra)."""
