"""A preprocessing stage written in TensorFlow (Brainwave's ``TensorflowStage``), saved as a SavedModel.

The function takes one encoded image (a scalar ``tf.string``) and returns the featurizer's float input
``[H, W, 3]``. ``brainwave_preprocessing()`` is Brainwave's own graph (decode, bilinear resize of the short
side to 256, central 224 crop, ImageNet mean subtraction, BGR for Keras' ResNet50); the default pipeline uses
the faster PIL + NumPy ``ImagePreprocessStage`` that computes the same thing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .preprocess import IMAGENET_MEAN_RGB, ImageError

PREFIX = "preprocess_savedmodel/"


def brainwave_preprocessing(resize_short: int = 256, crop: int = 224, channel_order: str = "BGR"):
    """Brainwave's preprocessing as a ``tf.function`` (one encoded image -> float32 [crop, crop, 3])."""
    import tensorflow as tf

    mean = tf.constant(IMAGENET_MEAN_RGB, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def preprocess(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        size = tf.cast(tf.round(hw * (resize_short / tf.reduce_min(hw))), tf.int32)
        size = tf.maximum(size, crop)
        image = tf.image.resize(image, size, method="bilinear")
        y0, x0 = (size[0] - crop) // 2, (size[1] - crop) // 2
        image = image[y0:y0 + crop, x0:x0 + crop] - mean
        if channel_order == "BGR":
            image = image[..., ::-1]
        return tf.ensure_shape(image, [crop, crop, 3])

    return preprocess


class TensorflowStage:
    """Preprocessing by a TensorFlow function: encoded image bytes -> float32 [H, W, 3]."""

    type = "tensorflow_preprocess"

    def __init__(self, function=None, files: dict[str, bytes] | None = None):
        if function is None and files is None:
            raise ValueError("TensorflowStage needs a tf.function (one encoded image -> float32 [H, W, 3])")
        self.function = function
        self.files = files
        self._dir = None

    def manifest(self, index: int, files: dict) -> dict:
        for name, data in self.saved_model_files().items():
            files[PREFIX + name] = data
        return {"type": self.type, "saved_model_dir": PREFIX, "signature": "preprocess(scalar string) -> [H,W,3]"}

    def saved_model_files(self) -> dict[str, bytes]:
        if self.files is None:
            import tensorflow as tf

            module = tf.Module()
            module.preprocess = self.function
            with tempfile.TemporaryDirectory() as d:
                tf.saved_model.save(module, d)
                self.files = {str(p.relative_to(d)): p.read_bytes() for p in Path(d).rglob("*") if p.is_file()}
        return self.files

    def load(self):
        """The callable function (restored from the SavedModel on first use)."""
        if self.function is None:
            import tensorflow as tf

            self._dir = tempfile.TemporaryDirectory(prefix="onda-tf-stage-")
            for name, data in self.files.items():
                p = Path(self._dir.name) / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            self.function = tf.saved_model.load(self._dir.name).preprocess
        return self.function

    def __call__(self, data: bytes) -> np.ndarray:
        import tensorflow as tf

        if not data:
            raise ImageError("empty image (0 bytes)")
        try:
            return self.load()(tf.constant(data)).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            first = (e.message or str(e)).strip().splitlines()[0]
            raise ImageError(f"preprocessing failed: {first}") from None
