"""Exporting a finished run: ONNX (fp32, int8) and the one-file package, each checked before it is written."""
