"""The models ``onda quantize`` builds: keras.applications by name (random, ImageNet or file weights)
or a Keras model file, with its preprocessing and input size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import QuantizeError


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
    "densenet121": Application("DenseNet121", "densenet", 224),
    "densenet169": Application("DenseNet169", "densenet", 224),
    "densenet201": Application("DenseNet201", "densenet", 224),
}


def _keras():
    from .tensorflow import import_tensorflow

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
