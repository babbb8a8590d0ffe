"""The default pipeline: Brainwave's preprocessing, the int8 ResNet50 featurizer, the 1000-class ImageNet head.

ImageNet weights come from Keras when they can be had (network or Keras' cache); otherwise the network is
built with seeded random weights and the caller is told, in one line, that the labels are then meaningless.
The quantized featurizer is expensive (about a minute), so the built zip is cached by its recipe.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from .definition import FeaturizerStage, ImagePreprocessStage, KerasStage, ModelDefinition
from .preprocess import ImagePreprocessing

SAMPLES = Path(__file__).parent / "samples"
IMAGENET_LABELS = Path(__file__).parent / "imagenet_labels.txt"
RECIPE_VERSION = 2


def imagenet_labels() -> list[str]:
    """The 1000 ILSVRC-2012 class names in Keras' class-index order (sorted WordNet ids)."""
    return [line.split(" ", 1)[1] for line in IMAGENET_LABELS.read_text().splitlines()]


def sample_images() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def calibration_set(preprocess: ImagePreprocessing, n_random: int, seed: int) -> list[np.ndarray]:
    """The shipped photos through the serving preprocessing, plus ``n_random`` random-pixel images."""
    out = [preprocess(p.read_bytes())[None] for p in sample_images()]
    rng = np.random.default_rng(seed)
    for _ in range(n_random):
        rgb = rng.integers(0, 256, size=(preprocess.crop, preprocess.crop, 3), dtype=np.uint8)
        out.append(preprocess.normalize(rgb)[None])
    return out


def build_resnet50(path: str | Path, weights: str = "auto", seed: int = 0, n_random: int = 2,
                   say: Callable[[str], None] = print, cache: bool = True) -> tuple[Path, str]:
    """Build (or reuse) the default ResNet50 pipeline zip at ``path``; returns (path, weights used).

    ``weights``: "imagenet" (fail without them), "random" (seeded), or "auto" (ImageNet, else random).
    """
    from ..quantizer import QuantizeError, build_model, quantize

    path = Path(path)
    recipe_file = path.with_suffix(".recipe.json")
    pre = ImagePreprocessing()
    for kind in (["imagenet", "random"] if weights == "auto" else [weights]):
        recipe = {"v": RECIPE_VERSION, "weights": kind, "seed": seed, "n_random": n_random,
                  "samples": [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sample_images()],
                  "pre": pre.to_json()}
        if cache and path.is_file() and recipe_file.is_file() and json.loads(recipe_file.read_text()) == recipe:
            say(f"pipeline: reusing {path} ({kind} weights)")
            return path, kind
        try:
            model, _ = build_model("resnet50", weights=kind, seed=seed, include_top=True)
        except QuantizeError as e:
            if weights != "auto":
                raise
            say("pipeline: ImageNet weights unavailable (offline?): using seeded random weights; "
                "the labels printed are then meaningless")
            continue
        break
    import keras

    features = keras.Model(model.inputs, model.get_layer("avg_pool").output, name="resnet50_featurizer")
    head = model.get_layer("predictions")
    classifier = keras.Sequential([keras.Input((features.output.shape[-1],)),
                                   keras.layers.Dense(head.units, activation="softmax", name="predictions")],
                                  name="imagenet_classifier")
    classifier.layers[-1].set_weights(head.get_weights())
    say(f"pipeline: quantizing the ResNet50 featurizer to int8 ({len(sample_images())} photos + {n_random} "
        "random images to calibrate; about a minute)")
    tflite = quantize(features, calibration_set(pre, n_random, seed), progress=say)
    md = ModelDefinition(name="resnet50", labels=imagenet_labels())
    md.pipeline.append(ImagePreprocessStage(pre))
    md.pipeline.append(FeaturizerStage(tflite))
    md.pipeline.append(KerasStage(classifier))
    md.save(path)
    recipe_file.write_text(json.dumps(recipe))
    return path, kind
