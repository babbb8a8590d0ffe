"""The quantizer's one error."""


class QuantizeError(RuntimeError):
    """The model could not be built, loaded or quantized; the message says why in one line."""
