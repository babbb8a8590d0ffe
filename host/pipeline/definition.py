"""A model definition in Brainwave's shape: ``ModelDefinition().pipeline`` is a list of stages, saved as a zip.

The zip holds ``manifest.json`` (versioned) and each stage's artifacts::

    {"format": "onda-pipeline", "version": 1, "name": "resnet50",
     "pipeline": [{"type": "image_preprocess", "params": {...}},
                  {"type": "featurizer", "model_path": "featurizer.tflite", "inputs": [...], "outputs": [...]},
                  {"type": "keras_classifier", "model_path": "classifier.keras", "dense_path": "classifier.npz"}],
     "labels_path": null}

Stages run in that order: preprocessing on the host CPU, the int8 featurizer on a backend (the engine), the
classifier on the host CPU on the dequantized features. A classifier made only of Dense/activation layers is
also stored as plain arrays (``dense_path``) so a server runs it with NumPy and never imports TensorFlow.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .preprocess import ImagePreprocessing

FORMAT = "onda-pipeline"
VERSION = 1
MANIFEST = "manifest.json"


class PipelineError(ValueError):
    """A model definition cannot be built, saved or loaded; the message says why."""


# -- stages ------------------------------------------------------------------------------------------------
@dataclass
class ImagePreprocessStage:
    """Decode, resize the short side, centre-crop, subtract the channel means (Brainwave's TF preprocessing)."""

    params: ImagePreprocessing = field(default_factory=ImagePreprocessing)
    type = "image_preprocess"

    def manifest(self, index: int, files: dict) -> dict:
        return {"type": self.type, "params": self.params.to_json()}


@dataclass
class FeaturizerStage:
    """The int8 model the engine runs (a full-int8 .tflite: int8 in, int8 out)."""

    tflite: bytes
    type = "featurizer"

    def __post_init__(self):
        if isinstance(self.tflite, (str, Path)):
            self.tflite = Path(self.tflite).read_bytes()
        if not isinstance(self.tflite, (bytes, bytearray)) or self.tflite[4:8] != b"TFL3":
            raise PipelineError("featurizer: not a .tflite flatbuffer (no TFL3 identifier)")

    def describe(self) -> dict:
        """Input/output tensor specs read from the flatbuffer (names, shapes, scales, zero points)."""
        from ..frontend import read_tflite
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(self.tflite)
            f.flush()
            g = read_tflite(f.name)
        return {"inputs": [g.tensor(t).spec() for t in g.inputs], "outputs": [g.tensor(t).spec() for t in g.outputs]}

    def manifest(self, index: int, files: dict) -> dict:
        path = "featurizer.tflite"
        files[path] = bytes(self.tflite)
        return {"type": self.type, "model_path": path, **self.describe()}


BrainWaveStage = FeaturizerStage  # Brainwave's name for the FPGA stage


class KerasStage:
    """A Keras classifier on the dequantized features (Brainwave's ``KerasStage(model)``)."""

    type = "keras_classifier"

    def __init__(self, model=None, dense: list[tuple[np.ndarray, np.ndarray, str]] | None = None,
                 keras_bytes: bytes | None = None):
        if model is None and dense is None and keras_bytes is None:
            raise PipelineError("KerasStage needs a Keras model")
        self.model = model
        self.keras_bytes = keras_bytes
        self.dense = dense if dense is not None else (dense_layers(model) if model is not None else None)

    def manifest(self, index: int, files: dict) -> dict:
        entry = {"type": self.type}
        if self.model is not None or self.keras_bytes is not None:
            files["classifier.keras"] = self.keras_bytes if self.keras_bytes is not None else _keras_bytes(self.model)
            entry["model_path"] = "classifier.keras"
        if self.dense is not None:
            buf = io.BytesIO()
            arrays = {}
            for i, (w, b, _) in enumerate(self.dense):
                arrays[f"w{i}"], arrays[f"b{i}"] = w, b
            np.savez(buf, **arrays)
            files["classifier.npz"] = buf.getvalue()
            entry["dense_path"] = "classifier.npz"
            entry["activations"] = [a for _, _, a in self.dense]
        entry["output_dim"] = int(self.dense[-1][0].shape[1]) if self.dense else None
        return entry

    def keras_model(self):
        if self.model is None:
            import os
            import tempfile
            import keras

            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "classifier.keras")
                Path(p).write_bytes(self.keras_bytes)
                self.model = keras.models.load_model(p, compile=False)
        return self.model

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Scores for float32 features [N, F]."""
        if self.dense is not None:
            return run_dense(self.dense, features)
        model = self.keras_model()
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        return np.asarray(model(features.reshape((-1, *shape)), training=False), np.float32)


ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid", "tanh")


def dense_layers(model) -> list[tuple[np.ndarray, np.ndarray, str]] | None:
    """A Keras model of Dense/Activation/Dropout/Flatten layers as [(W, b, activation)], else None."""
    out: list[list] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout", "Flatten", "Reshape"):
            continue
        if kind == "Dense":
            act = getattr(layer.activation, "__name__", "linear")
            if act not in ACTIVATIONS:
                return None
            w, *b = layer.get_weights()
            b = b[0] if b else np.zeros(w.shape[1], np.float32)
            out.append([w.astype(np.float32), b.astype(np.float32), act])
        elif kind in ("Activation", "Softmax", "ReLU"):
            act = {"Softmax": "softmax", "ReLU": "relu"}.get(kind) or getattr(layer.activation, "__name__", "")
            if act not in ACTIVATIONS or not out or out[-1][2] != "linear":
                return None
            out[-1][2] = act
        else:
            return None
    return [tuple(x) for x in out] or None


def run_dense(layers, x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1).astype(np.float32)
    for w, b, act in layers:
        x = x @ w + b
        if act == "relu":
            x = np.maximum(x, 0)
        elif act == "softmax":
            x = np.exp(x - x.max(axis=-1, keepdims=True))
            x /= x.sum(axis=-1, keepdims=True)
        elif act == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif act == "tanh":
            x = np.tanh(x)
    return x.astype(np.float32)


def _keras_bytes(model) -> bytes:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "classifier.keras")
        model.save(p)
        return Path(p).read_bytes()


# -- the definition ----------------------------------------------------------------------------------------
class ModelDefinition:
    """A pipeline of stages: [ImagePreprocessStage | TensorflowStage], FeaturizerStage, [KerasStage]."""

    def __init__(self, name: str = "model", labels: list[str] | None = None):
        self.name = name
        self.pipeline: list = []
        self.labels = labels

    # Brainwave's API
    def save(self, path: str | Path) -> Path:
        self.validate()
        files: dict[str, bytes] = {}
        stages = [stage.manifest(i, files) for i, stage in enumerate(self.pipeline)]
        manifest = {"format": FORMAT, "version": VERSION, "name": self.name, "pipeline": stages,
                    "labels_path": None}
        if self.labels:
            files["labels.txt"] = ("\n".join(self.labels) + "\n").encode()
            manifest["labels_path"] = "labels.txt"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=2))
            for name, data in files.items():
                z.writestr(name, data)
        tmp.replace(path)
        return path

    def validate(self) -> None:
        kinds = [s.type for s in self.pipeline]
        if kinds.count("featurizer") != 1:
            raise PipelineError(f"a pipeline needs exactly one featurizer stage, got {kinds.count('featurizer')}")
        order = {"image_preprocess": 0, "tensorflow_preprocess": 0, "featurizer": 1, "keras_classifier": 2}
        ranks = [order[k] for k in kinds]
        if ranks != sorted(ranks) or len(set(ranks)) != len(ranks):
            raise PipelineError("stages must be [image_preprocess | tensorflow_preprocess], featurizer, "
                                f"[keras_classifier]; got {kinds}")

    @property
    def preprocess(self):
        """The preprocessing stage (ImagePreprocessStage or TensorflowStage), or None."""
        return next((s for s in self.pipeline if s.type in ("image_preprocess", "tensorflow_preprocess")), None)

    @property
    def featurizer(self) -> FeaturizerStage:
        return next(s for s in self.pipeline if s.type == "featurizer")

    @property
    def classifier(self) -> KerasStage | None:
        return next((s for s in self.pipeline if s.type == "keras_classifier"), None)

    @classmethod
    def load(cls, path: str | Path) -> "ModelDefinition":
        path = Path(path)
        if not path.is_file():
            raise PipelineError(f"{path}: no such model definition file")
        try:
            z = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise PipelineError(f"{path}: not a valid zip ({e})") from None
        with z:
            def read(name: str, what: str) -> bytes:
                try:
                    return z.read(name)
                except KeyError:
                    raise PipelineError(f"{path}: {what} file {name!r} is missing from the zip") from None
                except (zipfile.BadZipFile, OSError, ValueError, zlib.error) as e:  # CRC, truncated, inflate errors
                    raise PipelineError(f"{path}: corrupt zip member {name!r} ({e})") from None
            try:
                manifest = json.loads(read(MANIFEST, "manifest"))
            except json.JSONDecodeError as e:
                raise PipelineError(f"{path}: manifest.json is not valid JSON ({e})") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise PipelineError(f"{path}: not an onda pipeline (manifest format {manifest.get('format')!r})"
                                    if isinstance(manifest, dict) else f"{path}: manifest is not a JSON object")
            version = manifest.get("version")
            if version != VERSION:
                raise PipelineError(f"{path}: manifest version {version!r} is not supported (this onda reads "
                                    f"version {VERSION})")
            md = cls(name=manifest.get("name", path.stem))
            for i, entry in enumerate(manifest.get("pipeline", [])):
                kind = entry.get("type")
                if kind == "image_preprocess":
                    try:
                        md.pipeline.append(ImagePreprocessStage(ImagePreprocessing.from_json(entry.get("params", {}))))
                    except (TypeError, ValueError) as e:
                        raise PipelineError(f"{path}: stage {i} (image_preprocess): {e}") from None
                elif kind == "tensorflow_preprocess":
                    from .tf_stage import TensorflowStage

                    prefix = entry.get("saved_model_dir", "")
                    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
                    if not prefix or not any(n.endswith("saved_model.pb") for n in names):
                        raise PipelineError(f"{path}: tensorflow_preprocess SavedModel file "
                                            f"'{prefix}saved_model.pb' is missing from the zip")
                    md.pipeline.append(TensorflowStage(files={n[len(prefix):]: read(n, "SavedModel") for n in names}))
                elif kind == "featurizer":
                    md.pipeline.append(FeaturizerStage(read(entry["model_path"], "featurizer model")))
                elif kind == "keras_classifier":
                    dense = None
                    if entry.get("dense_path"):
                        arrays = np.load(io.BytesIO(read(entry["dense_path"], "classifier weights")))
                        acts = entry["activations"]
                        dense = [(arrays[f"w{j}"], arrays[f"b{j}"], a) for j, a in enumerate(acts)]
                    kb = read(entry["model_path"], "classifier model") if entry.get("model_path") else None
                    md.pipeline.append(KerasStage(dense=dense, keras_bytes=kb))
                else:
                    raise PipelineError(f"{path}: stage {i} has unknown type {kind!r}")
            if manifest.get("labels_path"):
                md.labels = read(manifest["labels_path"], "labels").decode().splitlines()
        md.validate()
        return md
