"""Models the frontend must refuse, each with its own precise error."""

import numpy as np
import pytest

from onda.host.frontend import FrontendError, read_tflite
from onda.host.quantizer import quantize


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(i)
    model = keras.Model(i, keras.layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("fe") / "small.tflite"
    path.write_bytes(quantize(model, [rng.standard_normal((1, 8, 8, 3)).astype(np.float32) for _ in range(4)],
                              progress=lambda s: None))
    return path


def test_reads_valid_model(small_int8):
    g = read_tflite(small_int8)
    assert [op.kind.value for op in g.ops] == ["CONV_2D", "MEAN"]


def test_missing_file(tmp_path):
    with pytest.raises(FrontendError, match="no such file"):
        read_tflite(tmp_path / "nope.tflite")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + bytes(100), b"hello world, not a model"])
def test_not_tflite(tmp_path, content):
    p = tmp_path / "x.tflite"
    p.write_bytes(content)
    with pytest.raises(FrontendError, match="not a TFLite model"):
        read_tflite(p)


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.95])
def test_truncated(small_int8, tmp_path, fraction):
    data = small_int8.read_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(data[: max(8, int(len(data) * fraction))])
    with pytest.raises(FrontendError, match="truncated"):
        read_tflite(p)


def test_float_model_refused(tmp_path):
    import keras
    import tensorflow as tf

    i = keras.Input((8, 8, 3))
    model = keras.Model(i, keras.layers.Conv2D(4, 3)(i))
    p = tmp_path / "float.tflite"
    p.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(FrontendError, match=r"not an int8-quantized model: op #0 CONV_2D has float32 tensor"):
        read_tflite(p)


def test_unsupported_op_named_with_index_and_tensors(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    i = keras.Input((10,))
    model = keras.Model(i, keras.layers.Dense(3, activation="softmax")(i))
    rng = np.random.default_rng(0)
    p = tmp_path / "softmax.tflite"
    p.write_bytes(quantize(model, [rng.standard_normal((1, 10)).astype(np.float32) for _ in range(4)],
                           progress=lambda s: None))
    with pytest.raises(FrontendError) as e:
        read_tflite(p)
    msg = str(e.value)
    assert "op #1 SOFTMAX is not supported" in msg
    assert "inputs [#" in msg and "outputs [#" in msg and "int8" in msg
