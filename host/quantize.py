"""Keras CNN -> full-int8 TFLite model by TFLite's post-training quantization.

Activations int8 per tensor, weights int8 per output channel, int8 input and output: the model
the onda engine runs and LiteRT's reference kernels define.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class QuantizeError(RuntimeError):
    """The model could not be built, loaded or quantized; the message says why in one line."""


@dataclass(frozen=True)
class Application:
    """A keras.applications model: its constructor, preprocessing and input size."""

    constructor: str
    module: str
    size: int


APPLICATIONS = {
    "resnet50": Application("ResNet50", "resnet50", 224),
    "resnet101": Application("ResNet101", "resnet", 224),
    "resnet152": Application("ResNet152", "resnet", 224),
    "vgg16": Application("VGG16", "vgg16", 224),
    "vgg19": Application("VGG19", "vgg19", 224),
}

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


def _keras():
    from .tf_import import import_tensorflow

    import_tensorflow()
    import keras
    return keras


def build_model(spec: str, weights: str = "random", seed: int = 0, include_top: bool = False):
    """A Keras model and its preprocessing function from an application name or a model file.

    ``weights`` is "imagenet", "random" (seeded) or a path to a weights file. Without the top,
    application models end in global average pooling (the featurizer: ResNet50 gives 2048).
    """
    keras = _keras()
    keras.utils.set_random_seed(seed)
    name = spec.lower()
    if name in APPLICATIONS:
        app = APPLICATIONS[name]
        ctor = getattr(keras.applications, app.constructor)
        preprocess = getattr(getattr(keras.applications, app.module), "preprocess_input")
        kw = dict(include_top=include_top, input_shape=(app.size, app.size, 3))
        if not include_top:
            kw["pooling"] = "avg"
        if weights == "imagenet":
            try:
                model = ctor(weights="imagenet", **kw)
            except Exception as e:  # keras raises a bare Exception on a failed download
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise QuantizeError(f"cannot load ImageNet weights for {name} (no network or no cached "
                                    f"weights: {msg}); use --weights random or --weights PATH") from None
        else:
            model = ctor(weights=None, **kw)
            if weights not in ("random", None):
                _load_weights(model, weights)
        return model, preprocess
    path = Path(spec)
    if path.suffix in (".keras", ".h5") and path.is_file():
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as e:
            raise QuantizeError(f"{path}: cannot load Keras model: {e}") from None
        if weights not in ("random", None, "imagenet"):
            _load_weights(model, weights)
        return model, None
    known = ", ".join(sorted(APPLICATIONS))
    raise QuantizeError(f"{spec!r} is neither a Keras model file (.keras/.h5) nor an application ({known})")


def _load_weights(model, path: str) -> None:
    if not Path(path).is_file():
        raise QuantizeError(f"weights file {path} not found")
    try:
        model.load_weights(path)
    except Exception as e:
        raise QuantizeError(f"{path}: cannot load weights: {e}") from None


def input_size(model) -> tuple[int, int, int]:
    shape = model.inputs[0].shape
    if any(d is None for d in shape[1:]):
        raise QuantizeError(f"model input shape {tuple(shape)} must be fully defined (besides batch)")
    return tuple(int(d) for d in shape[1:])


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


@contextlib.contextmanager
def _quiet_stdout():
    """Silence stdout (Python's and file descriptor 1) while TensorFlow prints what a user of
    `onda quantize` need not read; progress and errors go to stderr and stay visible."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _prep(preprocess, image: np.ndarray) -> np.ndarray:
    x = image[None].copy()
    if preprocess is not None:
        x = np.asarray(preprocess(x))
    return x.astype(np.float32)


def quantize(model, calibration: list[np.ndarray], progress: Callable[[str], None] | None = None,
             per_channel_dense: bool = True) -> bytes:
    """Full-integer post-training quantization with TFLite's converter; returns .tflite bytes.

    ``per_channel_dense=False`` quantizes Dense weights per tensor (the older converter default).
    """
    from tqdm import tqdm

    from .tf_import import import_tensorflow

    tf = import_tensorflow()

    say = progress or (lambda s: print(s, file=sys.stderr))
    if not calibration:
        raise QuantizeError("calibration set is empty")

    def representative() -> Iterator[list[np.ndarray]]:
        for x in tqdm(calibration, desc="calibrating", unit="image", file=sys.stderr, leave=False):
            yield [x]

    say(f"quantizing {model.name}: {model.count_params():,} parameters, {len(calibration)} calibration images")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if not per_channel_dense:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    try:
        with _quiet_stdout(), warnings.catch_warnings():
            # The converter's own chatter: the SavedModel signature dump (stdout) and a warning
            # about input statistics that do not apply to full-integer quantization.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return converter.convert()
    except Exception as e:
        raise QuantizeError(f"TFLite conversion failed: {str(e).splitlines()[0]}") from None
