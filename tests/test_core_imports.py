"""edge_sdk and runtimes need only the core install: no torch, no lightning, no engine at import."""
from __future__ import annotations

import subprocess
import sys

# Blocks the heavy packages so that any import of them fails loudly, as in a core-only venv.
_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'lightning', 'pytorch_lightning', 'torchvision'}:
            raise ImportError('blocked for this test: ' + name)
        return None
sys.meta_path.insert(0, Block())
"""

_IMPORT_ALL = """
import pkgutil, importlib
import edge_sdk, runtimes
names = []
for pkg in (edge_sdk, runtimes):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
        importlib.import_module(info.name)
        names.append(info.name)
from edge_sdk import Detector, Detections, ModelMeta
heavy = sorted(m for m in sys.modules if m.split('.')[0] in
               {'torch', 'lightning', 'onnxruntime', 'openvino', 'ncnn', 'ai_edge_litert', 'tensorrt'})
print(len(names), heavy)
"""


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_edge_sdk_and_runtimes_import_without_torch():
    proc = _python(_BLOCKER + _IMPORT_ALL)
    assert proc.returncode == 0, proc.stderr
    count, heavy = proc.stdout.split(" ", 1)
    assert int(count) >= 10  # every module of both packages was imported
    assert heavy.strip() == "[]", heavy  # no engine or torch pulled in by importing


def test_blocker_really_blocks_torch():
    """The test above would pass vacuously if the blocker did not work."""
    proc = _python(_BLOCKER + "import torch")
    assert proc.returncode != 0 and "blocked for this test" in proc.stderr


def test_detector_runs_without_torch(small_model):
    code = _BLOCKER + f"""
import numpy as np
from edge_sdk import Detector
det = Detector({str(small_model)!r})
d = det(np.zeros((90, 160, 3), np.uint8))
assert 'torch' not in sys.modules
print(type(d).__name__)
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Detections"


def test_public_names_are_the_functions_not_their_modules():
    """`from edge_sdk import stream` once gave the module edge_sdk.stream ("'module' object is not callable")."""
    import inspect

    import numpy as np

    from edge_sdk import Detections, Detector, Letterbox, preprocess, read_image, stream

    assert all(inspect.isfunction(f) for f in (preprocess, read_image, stream))
    assert all(inspect.isclass(c) for c in (Detector, Detections, Letterbox))
    x, _ = preprocess(np.zeros((48, 64, 3), np.uint8), (32, 32))
    assert x.shape == (1, 3, 32, 32)
