"""The Brainwave-compatible scoring service (TF Serving's PredictionService/Predict over gRPC, its REST API beside).

``server`` loads grpc, the backends and the contract compiled from ``protos/``, so it is loaded only when used.
"""

__all__ = ["PredictionServer", "ServerConfig", "ServerThread"]


def __getattr__(name):
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
