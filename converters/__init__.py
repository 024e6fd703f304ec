"""Converters: torch->ONNX export helpers, ONNX graph rewrites, ONNX->each target (the entry points the
capability table names), and the output-parity check run after every conversion."""
