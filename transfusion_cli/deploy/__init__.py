"""Deployment: ONNX export, int8/fp16 quantisation, onnxruntime sessions and torch-free predict."""
