"""segdeploy: PyTorch segmentation model -> verified ONNX -> TensorRT engine, with an accuracy gate."""

__version__ = "0.1.0"
