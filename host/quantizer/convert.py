"""Keras model + calibration images -> full-int8 .tflite bytes, by TFLite's converter (post-training
quantization: activations int8 per tensor, weights int8 per output channel, int8 input and output)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Callable, Iterator

import numpy as np

from .errors import QuantizeError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _quiet_stdout():
    """Silence stdout (Python's and file descriptor 1) while TensorFlow prints what a user of
    `onda quantize` need not read; progress and errors go to stderr and stay visible."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def quantize(model, calibration: list[np.ndarray], progress: Callable[[str], None] | None = None,
             per_channel_dense: bool = True) -> bytes:
    """Full-integer post-training quantization with TFLite's converter; returns .tflite bytes.

    ``per_channel_dense=False`` quantizes Dense weights per tensor (the older converter default).
    """
    from tqdm import tqdm

    from .tensorflow import import_tensorflow

    tf = import_tensorflow()

    say = progress or (lambda s: print(s, file=sys.stderr))
    if not calibration:
        raise QuantizeError("calibration set is empty")

    def representative() -> Iterator[list[np.ndarray]]:
        for x in tqdm(calibration, desc="calibrating", unit="image", file=sys.stderr, leave=False):
            yield [x]

    say(f"quantizing {model.name}: {model.count_params():,} parameters, {len(calibration)} calibration images")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if not per_channel_dense:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    try:
        with _quiet_stdout(), warnings.catch_warnings():
            # The converter's own chatter: the SavedModel signature dump (stdout) and a warning
            # about input statistics that do not apply to full-integer quantization.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return converter.convert()
    except Exception as e:
        raise QuantizeError(f"TFLite conversion failed: {str(e).splitlines()[0]}") from None
