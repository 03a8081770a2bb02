"""ONNX export, int8 quantization and baking (needs the export extra: torch, onnx)."""
