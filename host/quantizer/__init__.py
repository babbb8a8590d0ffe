"""Keras CNN -> full-int8 TFLite model by TFLite's post-training quantization.

Activations int8 per tensor, weights int8 per output channel, int8 input and output: the model
the onda engine runs and LiteRT's reference kernels define.
"""

from .applications import APPLICATIONS, Application, build_model, input_size
from .calibration import IMAGE_SUFFIXES, directory_calibration, random_calibration
from .convert import quantize
from .errors import QuantizeError
from .tensorflow import import_tensorflow

__all__ = ["APPLICATIONS", "Application", "IMAGE_SUFFIXES", "QuantizeError", "build_model", "directory_calibration",
           "import_tensorflow", "input_size", "quantize", "random_calibration"]
