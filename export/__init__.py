"""How a model leaves PyTorch: ExecuTorch `.pte`, `.onnx`, `.tflite`, parity gates, metadata."""

from export.errors import ExportError, ParityError

__all__ = ["ExportError", "ParityError"]
