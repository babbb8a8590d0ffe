"""The Python client, in Brainwave's shape (``PredictionClient``), with the key actually sent."""

from .client import PredictionClient, ScoreResult, top_k

__all__ = ["PredictionClient", "ScoreResult", "top_k"]
