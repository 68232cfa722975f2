"""The product detector at serving time: preprocessing, decoding and an ONNX Runtime session.

No torch here (numpy, Pillow, onnxruntime): the graph is exported by `training/detector/`.
"""
