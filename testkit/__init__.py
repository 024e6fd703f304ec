"""Test and benchmark model builders (numpy-built ONNX graphs). Not shipped in the wheel."""
