"""Calibration images for post-training quantization: seeded random pixels or a directory of
images, resized to the model's input and put through its preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .applications import input_size
from .errors import QuantizeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


def random_calibration(model, preprocess, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random images (uniform 0..255 pixels) through the model's preprocessing."""
    h, w, c = input_size(model)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(n, h, w, c)).astype(np.float32)
    return [_prep(preprocess, im) for im in images]


def directory_calibration(model, preprocess, directory: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """Images from a directory, resized to the model's input, through its preprocessing."""
    from PIL import Image

    h, w, c = input_size(model)
    files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise QuantizeError(f"{directory}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) to calibrate with")
    out = []
    for p in files[:limit]:
        try:
            im = Image.open(p).convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
        except Exception as e:
            raise QuantizeError(f"{p}: cannot read image: {e}") from None
        arr = np.asarray(im, dtype=np.float32).reshape(h, w, c)
        out.append(_prep(preprocess, arr))
    return out


def _prep(preprocess, image: np.ndarray) -> np.ndarray:
    x = image[None].copy()
    if preprocess is not None:
        x = np.asarray(preprocess(x))
    return x.astype(np.float32)
