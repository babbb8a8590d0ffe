"""The Brainwave-compatible scoring service (TF Serving's PredictionService/Predict over gRPC)."""

from .server import PredictionServer, ServerConfig, ServerThread

__all__ = ["PredictionServer", "ServerConfig", "ServerThread"]
