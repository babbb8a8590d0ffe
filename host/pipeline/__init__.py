"""Pipelines in Brainwave's shape: preprocessing, the int8 featurizer (the engine), a classifier; saved as a zip."""

from .definition import (BrainWaveStage, FeaturizerStage, ImagePreprocessStage, KerasStage, ModelDefinition,
                         PipelineError)
from .preprocess import ImageError, ImagePreprocessing, dequantize, quantize_input
from .tf_stage import TensorflowStage, brainwave_preprocessing

__all__ = ["BrainWaveStage", "FeaturizerStage", "ImageError", "ImagePreprocessStage", "ImagePreprocessing",
           "KerasStage", "ModelDefinition", "PipelineError", "TensorflowStage", "brainwave_preprocessing", "dequantize",
           "quantize_input"]
