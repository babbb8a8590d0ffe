"""Model importers: source formats into the onda IR."""

from .tflite_reader import FrontendError, read_tflite

__all__ = ["FrontendError", "read_tflite"]
