"""Trainer: the YOLOv8-style detector, its data pipeline, loss and Lightning training (needs the `train` extra).
QAT is not in this version."""
