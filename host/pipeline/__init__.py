"""Pipelines in Brainwave's shape: preprocessing, the int8 featurizer (the engine), a classifier; saved as a zip."""

from .definition import (BrainWaveStage, FeaturizerStage, ImagePreprocessStage, KerasStage, ModelDefinition,
                         PipelineError)
from .preprocess import ImageError, ImagePreprocessing, dequantize, quantize_input

__all__ = ["BrainWaveStage", "FeaturizerStage", "ImageError", "ImagePreprocessStage", "ImagePreprocessing",
           "KerasStage", "ModelDefinition", "PipelineError", "dequantize", "quantize_input"]
