"""The Brainwave-compatible scoring service (TF Serving's PredictionService/Predict over gRPC).

``server`` imports TensorFlow's protos (seconds), so it is loaded only when used.
"""

__all__ = ["PredictionServer", "ServerConfig", "ServerThread"]


def __getattr__(name):
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
