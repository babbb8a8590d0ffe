"""Verification against the oracle: LiteRT's reference int8 kernels (BUILTIN_REF) and the
tensor-by-tensor comparison of any backend with them."""

from .compare import TensorComparison, compare, format_table, random_inputs, reference_tflite
from .reference import ReferenceModel

__all__ = ["ReferenceModel", "TensorComparison", "compare", "format_table", "random_inputs", "reference_tflite"]
