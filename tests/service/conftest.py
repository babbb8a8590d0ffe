"""Fixtures of the service tests: a small int8 pipeline (seconds to quantize), TLS material made at test time,
a real server on a loopback port, and the expected answers computed apart from the service (LiteRT's reference
kernels on the featurizer, Keras for the classifier)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_artifact

FEATURES = 16
CLASSES = 10
KEYS = ("primary-key-for-tests", "secondary-key-for-tests")


def _tiny_models(seed: int = 1):
    import keras

    keras.utils.set_random_seed(seed)
    featurizer = keras.Sequential([keras.Input((224, 224, 3)),
                                   keras.layers.Conv2D(8, 3, strides=4, activation="relu"),
                                   keras.layers.Conv2D(FEATURES, 3, strides=2, activation="relu"),
                                   keras.layers.GlobalAveragePooling2D()], name="tiny_featurizer")
    classifier = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(12, activation="relu"),
                                   keras.layers.Dense(CLASSES, activation="softmax")], name="tiny_classifier")
    return featurizer, classifier


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    def build(path):
        from onda.host.pipeline import ImagePreprocessing
        from onda.host.pipeline.resnet50 import calibration_set
        from onda.host.quantizer import quantize

        featurizer, _ = _tiny_models()
        path.write_bytes(quantize(featurizer, calibration_set(ImagePreprocessing(), 4, 0), progress=lambda s: None))

    return shared_artifact(tmp_path_factory, "service_tiny_int8.tflite", build)


@pytest.fixture(scope="session")
def tiny_classifier():
    return _tiny_models()[1]


@pytest.fixture(scope="session")
def pipeline_zips(tmp_path_factory, tiny_tflite, tiny_classifier):
    """{"tiny": preprocess + featurizer + classifier, "features": preprocess + featurizer (no classifier)}."""
    from onda.host.pipeline import FeaturizerStage, ImagePreprocessStage, KerasStage, ModelDefinition

    d = tmp_path_factory.mktemp("pipelines")
    full = ModelDefinition("tiny", labels=[f"label-{i}" for i in range(CLASSES)])
    full.pipeline += [ImagePreprocessStage(), FeaturizerStage(tiny_tflite.read_bytes()), KerasStage(tiny_classifier)]
    features = ModelDefinition("features")
    features.pipeline += [ImagePreprocessStage(), FeaturizerStage(tiny_tflite.read_bytes())]
    return {"tiny": full.save(d / "tiny.zip"), "features": features.save(d / "features.zip")}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    from onda.host.service.tls import write_self_signed

    return write_self_signed(tmp_path_factory.mktemp("tls"))


class Reference:
    """Expected answers, computed apart from the service: the preprocessing, TFLite's input quantization
    (the golden model's ``quantize``: round half away from zero, as TFLite's AffineQuantize), LiteRT's
    reference kernels (BUILTIN_REF, not an onda backend) on the int8 featurizer, its output dequantized the
    same way, then the classifier (Keras itself)."""

    def __init__(self, tflite, classifier):
        from onda.host.pipeline import ImagePreprocessing
        from onda.host.verify import ReferenceModel

        self.model = ReferenceModel(tflite, preserve_all_tensors=False)
        self.in_scale, self.in_zp = self.model.input_details[0]["quantization"]
        self.out_scale, self.out_zp = self.model.output_details[0]["quantization"]
        self.classifier = classifier
        self.pre = ImagePreprocessing()

    def int8(self, x: np.ndarray) -> np.ndarray:
        from onda.sim.golden.kernels import quantize

        return quantize(x, self.in_scale, self.in_zp)

    def features(self, x_float: np.ndarray) -> np.ndarray:
        from onda.sim.golden.kernels import dequantize

        (q,) = self.model.run([self.int8(x_float)])
        return dequantize(q, self.out_scale, self.out_zp)

    def scores_float(self, x_float: np.ndarray) -> np.ndarray:
        return np.asarray(self.classifier(self.features(x_float), training=False))

    def scores_images(self, images: list[bytes]) -> np.ndarray:
        return self.scores_float(np.stack([self.pre(b) for b in images]))


@pytest.fixture(scope="session")
def reference(tiny_tflite, tiny_classifier):
    return Reference(tiny_tflite, tiny_classifier)


@pytest.fixture(scope="session")
def photos():
    from onda.host.pipeline.resnet50 import sample_images

    return {p.name: p.read_bytes() for p in sample_images()}


@pytest.fixture(scope="module")
def tls_server(pipeline_zips, tls_files):
    """A real server on loopback ports: TLS, two keys, two models (the first is the default), gRPC and REST."""
    from onda.host.service import ServerConfig, ServerThread

    cert, key = tls_files
    config = ServerConfig(models={"tiny": pipeline_zips["tiny"], "features": pipeline_zips["features"]},
                          tls_cert=cert, tls_key=key, keys=list(KEYS), max_images=16, max_message_mb=2, rest_port=0)
    server = ServerThread(config)
    yield server
    server.stop()


@pytest.fixture
def client_factory(tls_server, tls_files):
    from onda.host.client import PredictionClient

    made = []

    def make(key: str = KEYS[0], **kw):
        kw.setdefault("retry_delays", ())
        c = PredictionClient("localhost", tls_server.port, use_ssl=True, access_token=key,
                             root_certificates=tls_files[0], **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
