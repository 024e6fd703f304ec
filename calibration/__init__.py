"""INT8 calibration (per-backend PTQ, sensitivity, caches): empty in this version; int8 rows say so."""
