"""qstudio: a desktop quantization studio for PyTorch models."""

__version__ = "0.1.0"
