"""A small ResNet-style classifier of scikit-learn's handwritten digits (8x8 upsampled to 16x16).

The data set ships inside scikit-learn, so training and evaluation need no download.
``python -m onda.host.models.digits.train`` retrains it and rewrites the shipped files:
``digits.weights.h5`` (float Keras weights) and ``digits_int8.tflite`` (full-int8 model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
WEIGHTS = HERE / "digits.weights.h5"
TFLITE = HERE / "digits_int8.tflite"
SIZE = 16
SEED = 0


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): float32 [N, 16, 16, 1] in [0, 1], stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    up = np.kron(images, np.ones((1, 2, 2), dtype=np.float32))[..., None]  # nearest-neighbour 2x
    x_tr, x_te, y_tr, y_te = train_test_split(up, d.target, test_size=0.2, random_state=SEED, stratify=d.target)
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def build():
    """The float Keras model: stem conv, two residual blocks, max and average pooling, GAP, dense."""
    import keras
    from keras import layers as L

    def block(x, c):
        y = L.Conv2D(c, 3, padding="same", activation="relu")(x)
        y = L.Conv2D(c, 3, padding="same")(y)
        return L.ReLU()(L.Add()([x, y]))

    i = keras.Input((SIZE, SIZE, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(i)
    x = block(x, 16)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(24, 3, padding="same", activation="relu")(x)
    x = block(x, 24)
    x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10)(x), name="digits_resnet")


def load_float_model():
    model = build()
    model.load_weights(WEIGHTS)
    return model
