"""The image encoder: model specs, backbones, checkpoints, PyTorch and ONNX runtimes,
preprocessing, degraded reference views, crop boxes. May import storage/.
"""
