"""A pipeline loaded for serving: preprocessing on the host, the featurizer on a device pool, the classifier."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from ..pipeline import ImageError, ImagePreprocessing, ModelDefinition, dequantize, quantize_input
from ..pipeline.preprocess import QuantizedPreprocessing
from ..runtime import get_backend
from .batching import DevicePool


class InputError(ValueError):
    """The request's input is wrong (INVALID_ARGUMENT); the message says what and where."""


class ServedModel:
    def __init__(self, name: str, definition: ModelDefinition, backend: str, workdir: str | Path,
                 version: int = 1, devices: int = 1, max_batch: int = 8, max_wait_s: float = 0.005,
                 max_queue: int = 256, device_urls: list[str] | None = None, cluster=None):
        """``cluster``: an ``onda.host.cluster.devices.ClusterDevices``; the featurizer then runs on its device
        actors (the pool starts empty and follows them) and no backend is loaded in this process."""
        self.name = name
        self.version = version
        self.definition = definition
        tflite = bytes(definition.featurizer.tflite)
        if cluster is not None:
            self.backend = cluster
            inputs, outputs = cluster.prepare(name, tflite)
            loaded = []
        else:
            path = Path(workdir) / f"featurizer-{hashlib.sha256(tflite).hexdigest()[:16]}.tflite"
            if not path.is_file():
                path.write_bytes(tflite)
            if device_urls:  # one backend per board: the pool is the boards
                backends = [get_backend(backend, device=url) for url in device_urls]
            else:
                backends = [get_backend(backend)] * devices
            self.backend = backends[0]
            loaded = [b.load(path) for b in backends]
            for model in loaded:  # a simulated engine is built and given its weights now, not in the first request
                getattr(model, "prepare", lambda: None)()
            inputs, outputs = loaded[0].inputs, loaded[0].outputs
        self.input_spec = inputs[0]
        self.output_spec = outputs[0]
        if self.input_spec.dtype != "int8" or self.output_spec.dtype != "int8":
            raise ValueError(f"model {name!r}: the featurizer must take and give int8 (full-int8 quantization), "
                             f"got {self.input_spec.dtype} -> {self.output_spec.dtype}")
        self.image_shape = tuple(int(d) for d in self.input_spec.shape[1:])
        stage = definition.preprocess
        self.preprocess = getattr(stage, "params", stage)  # ImagePreprocessing, or a TensorflowStage
        if hasattr(self.preprocess, "load"):
            self.preprocess.load()  # restore a TensorFlow stage now, not in racing request threads
        crop = getattr(self.preprocess, "crop", None)
        channels = getattr(self.preprocess, "channels", 3)
        if crop is not None and (crop, crop, channels) != self.image_shape:
            raise ValueError(f"model {name!r}: preprocessing crops {crop}x{crop}x{channels} "
                             f"but the featurizer takes {'x'.join(map(str, self.image_shape))}")
        self._quantized = (QuantizedPreprocessing(self.preprocess, self.input_spec.scale, self.input_spec.zero_point)
                           if isinstance(self.preprocess, ImagePreprocessing) else None)
        self.classifier = definition.classifier
        self.labels = definition.labels
        self.pool = DevicePool(loaded, max_batch=max_batch, max_wait_s=max_wait_s, max_queue=max_queue, name=name,
                               dynamic=cluster is not None)

    # -- host-side stages (run in a thread executor) ----------------------------------------------------
    def from_images(self, images: list[bytes]) -> np.ndarray:
        if self.preprocess is None:
            raise InputError(f"model {self.name!r} has no preprocessing stage: send DT_FLOAT "
                             f"[N,{','.join(map(str, self.image_shape))}] instead of encoded images")
        out = np.empty((len(images), *self.image_shape), np.int8)
        s, zp = self.input_spec.scale, self.input_spec.zero_point
        for i, data in enumerate(images):
            try:
                if self._quantized is not None:  # decode, resize, crop, then one table lookup per channel
                    out[i] = self._quantized(data)
                    continue
                x = self.preprocess(data)
            except ImageError as e:
                raise InputError(f"images[{i}]: {e}") from None
            if x.shape != self.image_shape:
                raise InputError(f"images[{i}]: preprocessing gave shape {list(x.shape)}, the featurizer takes "
                                 f"{list(self.image_shape)}")
            out[i] = quantize_input(x, s, zp)
        return out

    def from_floats(self, x: np.ndarray) -> np.ndarray:
        if not np.isfinite(x).all():
            raise InputError("images: DT_FLOAT input holds NaN or infinity")
        return quantize_input(x, self.input_spec.scale, self.input_spec.zero_point)

    def score_here(self, images: list[bytes]) -> tuple[np.ndarray, float]:
        """Scores of encoded images through every stage, on this thread (no batching, no server), and the
        backend's compute time in seconds: what ``onda score PIPELINE.zip`` runs."""
        x = self.from_images(images)
        t0 = time.perf_counter()
        (q,) = self.pool.devices[0].run([x])
        return self.postprocess(q), time.perf_counter() - t0

    def postprocess(self, q: np.ndarray) -> np.ndarray:
        """int8 features [n, F] -> float32 scores [n, classes], or features [n, 1, 1, F] without a classifier."""
        features = dequantize(q, self.output_spec.scale, self.output_spec.zero_point)
        if self.classifier is None:
            return features.reshape(features.shape[0], 1, 1, -1) if features.ndim == 2 else features
        return self.classifier(features.reshape(features.shape[0], -1))
