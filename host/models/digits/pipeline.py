"""The digits classifier as a servable pipeline, and held-out digits as PNG files: a model whose answers
mean something with no download (``make demo`` serves it beside ResNet50).

The pipeline decodes a grey image, takes its central 16x16 pixels, scales 0..255 to the [0, 1] the model
was trained on, runs the int8 model and turns its 10 logits into probabilities (a softmax head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import SIZE, TFLITE, load_data

LABELS = [str(d) for d in range(10)]


def preprocessing():
    from ...pipeline import ImagePreprocessing

    return ImagePreprocessing(resize_short=SIZE, crop=SIZE, channel_order="L", mean=(0.0, 0.0, 0.0), scale=1 / 255)


def build_pipeline(path: str | Path) -> Path:
    """The pipeline zip at ``path`` (preprocessing, the shipped int8 model, a softmax over its logits)."""
    from ...pipeline import FeaturizerStage, ImagePreprocessStage, KerasStage, ModelDefinition

    md = ModelDefinition("digits", labels=LABELS)
    head = [(np.eye(10, dtype=np.float32), np.zeros(10, np.float32), "softmax")]
    md.pipeline += [ImagePreprocessStage(preprocessing()), FeaturizerStage(TFLITE.read_bytes()), KerasStage(dense=head)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return md.save(path)


def held_out_pngs(directory: str | Path, n: int = 10) -> list[tuple[Path, int]]:
    """The first ``n`` held-out digits (never seen in training) as 16x16 grey PNGs; [(path, true label)]."""
    from PIL import Image

    _, _, x_te, y_te = load_data()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(min(n, len(y_te))):
        pixels = np.round(x_te[i, ..., 0] * 255).astype(np.uint8)
        path = directory / f"digit-{i:03d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        out.append((path, int(y_te[i])))
    return out
