"""INT8 calibration: observers, per-backend PTQ, sensitivity, caches (not written yet)."""
