"""Imported first by the scripts here: puts the checkout on sys.path, so `testkit` (the test and benchmark
model builders, which the wheel does not ship) imports when a script runs as `python benchmarks/x.py`."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
