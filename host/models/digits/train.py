"""Retrain the digits classifier and rewrite its shipped weights and int8 model.

    python -m onda.host.models.digits.train
"""

from __future__ import annotations

import sys

import numpy as np

from ...quantizer import quantize
from ...quantizer import import_tensorflow
from . import SEED, TFLITE, WEIGHTS, build, load_data


def main() -> int:
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(SEED)
    x_tr, y_tr, x_te, y_te = load_data()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_tr, y_tr, epochs=40, batch_size=64, verbose=2, validation_split=0.1)
    _, acc = model.evaluate(x_te, y_te, verbose=0)
    print(f"float test accuracy: {acc:.4f}", file=sys.stderr)
    model.save_weights(WEIGHTS)
    calibration = [x_tr[i:i + 1] for i in range(0, len(x_tr), 7)]
    TFLITE.write_bytes(quantize(model, calibration))
    print(f"wrote {WEIGHTS} and {TFLITE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
