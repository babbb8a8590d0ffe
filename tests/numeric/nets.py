"""Small Keras networks that exercise every op and edge of the numeric contract."""

from __future__ import annotations

import numpy as np

L = None  # keras.layers, bound lazily so importing this module does not import TensorFlow


def _layers():
    global L
    if L is None:
        import keras
        L = keras.layers
    return L


def conv_stack(k, stride, padding, cin, cout, act, dilation=1, size=15):
    L = _layers()

    def build(i):
        x = L.Conv2D(cin, 1, activation="relu")(i)
        return L.Conv2D(cout, k, strides=stride, padding=padding, activation=act, dilation_rate=dilation)(x)
    h, w = (size, size) if isinstance(size, int) else size
    return (h, w, 3), build


def residual(scale_ratio):
    """Two branches with very different ranges (the second scaled by ``scale_ratio``) added."""
    L = _layers()
    import keras

    def build(i):
        a = L.Conv2D(13, 3, padding="same")(i)
        b = L.Conv2D(13, 1, kernel_initializer=keras.initializers.RandomUniform(-scale_ratio, scale_ratio))(i)
        x = L.Add()([a, b])
        x = L.ReLU()(x)
        y = L.Conv2D(13, 3, padding="same", activation="relu")(x)
        return L.Add()([x, y])
    return (12, 12, 5), build


def pools(kind, pool, stride, padding):
    L = _layers()
    cls = L.MaxPooling2D if kind == "max" else L.AveragePooling2D

    def build(i):
        x = L.Conv2D(6, 3, padding="same", activation="relu")(i)
        return cls(pool, strides=stride, padding=padding)(x)
    return (13, 11, 3), build


def head(keepdims):
    L = _layers()

    def build(i):
        x = L.Conv2D(20, 3, strides=2, padding="same", activation="relu")(i)
        x = L.GlobalAveragePooling2D(keepdims=keepdims)(x)
        if keepdims:
            x = L.Flatten()(x)
        return L.Dense(7)(x)
    return (10, 10, 3), build


def flatten_dense():
    L = _layers()

    def build(i):
        x = L.Conv2D(5, 3, strides=2, activation="relu")(i)
        x = L.Flatten()(x)
        return L.Dense(11, activation="relu")(x)
    return (9, 9, 2), build


def resnet_stem():
    """ResNet50's stem: ZeroPadding2D(3), 7x7/2 conv, ZeroPadding2D(1), 3x3/2 max pool."""
    L = _layers()

    def build(i):
        x = L.ZeroPadding2D(3)(i)
        x = L.Conv2D(16, 7, strides=2, activation="relu")(x)
        x = L.ZeroPadding2D(1)(x)
        return L.MaxPooling2D(3, strides=2)(x)
    return (32, 32, 3), build


def vgg_block():
    L = _layers()

    def build(i):
        x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
        return L.MaxPooling2D(2)(x)
    return (16, 16, 3), build


def saturating():
    """Calibrated on a narrow range, then fed full-range int8: clamps and saturation everywhere."""
    L = _layers()

    def build(i):
        x = L.Conv2D(9, 3, padding="same", activation="relu6")(i)
        y = L.Conv2D(9, 1)(x)
        return L.Add()([x, y])
    return (8, 8, 3), build


def dense_block(beta: bool):
    """DenseNet's pattern: batch norm + ReLU before each conv, each conv's output concatenated to its
    input. Random batch-norm statistics make the scale a real per-channel MUL (``beta``: and a
    per-channel ADD of the shift)."""
    L = _layers()
    import keras

    def bn():
        return L.BatchNormalization(
            gamma_initializer=keras.initializers.RandomUniform(0.3, 2.0),
            beta_initializer=keras.initializers.RandomUniform(-1.0, 1.0) if beta else "zeros",
            moving_mean_initializer=keras.initializers.RandomNormal(0.0, 0.5) if beta else "zeros",
            moving_variance_initializer=keras.initializers.RandomUniform(0.5, 2.0))

    def build(i):
        x = L.Conv2D(8, 3, padding="same")(i)
        for _ in range(2):
            y = L.ReLU()(bn()(x))
            y = L.Conv2D(12, 1, activation="relu")(y)
            y = L.Conv2D(4, 3, padding="same")(y)
            x = L.Concatenate()([x, y])
        x = L.ReLU()(bn()(x))
        return L.AveragePooling2D(2)(L.Conv2D(6, 1)(x))
    return (10, 10, 3), build


def concat_wide():
    """The graph input concatenated with a conv output of a 40x wider range. TFLite's int8
    CONCATENATION takes only inputs quantized as its output, so the converter gives the graph input
    the wide range (``test_concat_quantization``)."""
    L = _layers()
    import keras

    def build(i):
        y = L.Conv2D(5, 3, padding="same", kernel_initializer=keras.initializers.RandomUniform(-20, 20))(i)
        x = L.Concatenate()([i, y])
        return L.Conv2D(7, 1)(x)
    return (9, 9, 3), build


def concat_nested():
    """Concatenations inside concatenations, of conv, pool and concat outputs; one input also read by
    a SAME conv (which cannot read a channel slice: that input is copied), the others read by 1x1,
    pools and a VALID conv (slices of the last concatenation)."""
    L = _layers()

    def build(i):
        a = L.Conv2D(5, 3, padding="same", activation="relu")(i)
        b = L.Conv2D(4, 3, padding="same")(a)
        x = L.Concatenate()([a, b])
        y = L.Conv2D(3, 1)(x)
        x2 = L.Concatenate()([x, y])
        p = L.MaxPooling2D(2)(x2)
        q = L.Conv2D(6, 1, activation="relu")(p)
        x3 = L.Concatenate()([p, q, L.AveragePooling2D(1)(p)])
        return L.Conv2D(4, 3)(x3)
    return (9, 9, 3), build


def multiply():
    """Two activations multiplied (MUL without broadcasting), and one scaled per channel by a constant."""
    L = _layers()
    import keras

    def build(i):
        a = L.Conv2D(6, 3, padding="same")(i)
        b = L.Conv2D(6, 1, activation="relu")(i)
        x = L.Multiply()([a, b])
        scale = np.linspace(-2.0, 3.0, 6).astype(np.float32).reshape(1, 1, 1, 6)
        return keras.ops.multiply(x, scale)
    return (8, 8, 4), build


def dense_wide(shape, units):
    """A convolution flattened into a dense layer of a long reduction (K = H * W * C)."""
    L = _layers()

    def build(i):
        x = L.Conv2D(shape[-1], 1, activation="relu")(i)
        x = L.Flatten()(x)
        return L.Dense(units)(x)
    return shape[:2] + (3,), build


def wide_rows():
    """Rows wider than the iCEBreaker's activation slot through every kind of layer: convolutions
    (column tiles), ADD (pixel tiles), a concatenation copying the graph input, PAD (channel
    chunks), a pool."""
    L = _layers()

    def build(i):
        a = L.Conv2D(32, 1, activation="relu")(i)
        b = L.Conv2D(32, 3, padding="same")(a)
        s = L.Add()([a, b])
        y = L.Concatenate()([s, i])
        y = L.ZeroPadding2D(((1, 1), (2, 0)))(y)
        return L.MaxPooling2D(2)(y)
    return (4, 110, 3), build


CASES = {
    "conv1x1_s1_valid": (conv_stack(1, 1, "valid", 5, 7, None), 1.0),
    "conv3x3_s1_same_relu": (conv_stack(3, 1, "same", 5, 13, "relu"), 1.0),
    "conv3x3_s2_same": (conv_stack(3, 2, "same", 3, 9, None), 1.0),
    "conv3x3_s2_valid_relu6": (conv_stack(3, 2, "valid", 6, 10, "relu6"), 1.0),
    "conv7x7_s2_same": (conv_stack(7, 2, "same", 3, 17, "relu", size=20), 1.0),
    "conv1x1_s2_valid": (conv_stack(1, 2, "valid", 11, 6, None), 1.0),
    "conv3x3_dilated2_same": (conv_stack(3, 1, "same", 5, 8, None, dilation=2), 1.0),
    "conv3x3_dilated3_valid": (conv_stack(3, 1, "valid", 4, 6, None, dilation=3), 1.0),
    "conv3x3_dilated2_same_relu": (conv_stack(3, 1, "same", 5, 8, "relu", dilation=2), 1.0),  # standalone RELU
    "conv3x3_dilated2_valid_relu6": (conv_stack(3, 1, "valid", 4, 7, "relu6", dilation=2), 1.0),  # standalone RELU6
    "conv3x2_dilated2_same_odd": (conv_stack((3, 2), 1, "same", 3, 5, None, dilation=(2, 3), size=13), 1.0),
    "residual_scales_1_to_50": (residual(5.0), 1.0),
    "maxpool3_s2_same": (pools("max", 3, 2, "same"), 1.0),
    "maxpool2_s2_valid": (pools("max", 2, 2, "valid"), 1.0),
    "avgpool3_s1_same": (pools("avg", 3, 1, "same"), 1.0),
    "avgpool2_s2_valid": (pools("avg", 2, 2, "valid"), 1.0),
    "gap_dense": (head(False), 1.0),
    "gap_keepdims_flatten_dense": (head(True), 1.0),
    "flatten_dense_relu": (flatten_dense(), 1.0),
    "resnet_stem_pad_maxpool": (resnet_stem(), 1.0),
    "vgg_block": (vgg_block(), 1.0),
    "dense_block_mul_concat": (dense_block(False), 1.0),
    "dense_block_mul_add_concat": (dense_block(True), 1.0),
    "concat_graph_input_wide_conv": (concat_wide(), 1.0),
    "concat_nested_views": (concat_nested(), 1.0),
    "mul_elementwise_and_per_channel": (multiply(), 1.0),
    "saturating": (saturating(), 0.05),
    # Layers whose smallest whole-row tile does not fit the iCEBreaker's buffers (some not the ULX3S's):
    # passes over K with partial sums in ACC, column tiles, and both.
    "conv3x3_k_split": (conv_stack(3, 1, "same", 96, 8, "relu", size=8), 1.0),
    "dense_k_split": (dense_wide((8, 8, 16), 10), 1.0),
    "dense_k_split_ulx3s": (dense_wide((10, 20, 32), 4), 1.0),
    "conv3x3_column_tiles": (conv_stack(3, 1, "same", 24, 8, None, size=(12, 120)), 1.0),
    "conv5x5_s2_k_and_column_split": (conv_stack(5, 2, "same", 40, 6, "relu", size=(10, 60)), 1.0),
    "wide_rows_add_concat_pool": (wide_rows(), 1.0),
}


def build_case(name: str, seed: int = 0):
    """(keras model, calibration list) for a case; calibration amplitude narrows ranges."""
    import keras

    (shape, build), amplitude = CASES[name]
    keras.utils.set_random_seed(seed)
    i = keras.Input(shape)
    model = keras.Model(i, build(i), name=name)
    rng = np.random.default_rng(seed)
    calib = [(amplitude * rng.standard_normal((1,) + shape)).astype(np.float32) for _ in range(6)]
    return model, calib


_QUANTIZED: dict[str, bytes] = {}


def quantized_case(name: str) -> bytes:
    """The case's int8 .tflite (quantized once per process, then reused for every engine)."""
    if name not in _QUANTIZED:
        from onda.host.quantizer import quantize

        model, calib = build_case(name)
        _QUANTIZED[name] = quantize(model, calib, progress=lambda s: None)
    return _QUANTIZED[name]
