"""Converters: torch->ONNX, ONNX graph rewrites, ONNX->targets, parity checks (not written yet)."""
