"""ONNX export and int8 quantization (the export extra: torch, onnx); baking (the bake extra: onnx only)."""
