"""The default ResNet50 pipeline, built and served (slow: quantizing ResNet50 takes a minute; `make test-slow`)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_default_resnet50_pipeline_built_and_served(tmp_path, photos):
    from onda.host.client import PredictionClient
    from onda.host.pipeline import ImagePreprocessing, ModelDefinition
    from onda.host.pipeline.resnet50 import build_resnet50
    from onda.host.verify import ReferenceModel
    from onda.host.service import ServerConfig, ServerThread
    from onda.sim.golden.kernels import dequantize, quantize

    path, weights = build_resnet50(tmp_path / "resnet50.zip", weights="random", seed=0, say=lambda s: None)
    assert weights == "random"
    md = ModelDefinition.load(path)
    pre = md.preprocess.params
    assert (pre.resize_short, pre.crop, pre.channel_order) == (256, 224, "BGR")
    spec = md.featurizer.describe()
    assert spec["inputs"][0]["shape"] == [1, 224, 224, 3] and spec["outputs"][0]["shape"] == [1, 2048]
    assert md.classifier.dense[0][0].shape == (2048, 1000) and md.classifier.dense[0][2] == "softmax"

    # Expected, apart from the service: TFLite's input quantization (the golden model's quantize: round half
    # away from zero), LiteRT's reference kernels on the featurizer, then the head, on the preprocessed photo.
    model = ReferenceModel(bytes(md.featurizer.tflite), preserve_all_tensors=False)
    (si, zi), (so, zo) = model.input_details[0]["quantization"], model.output_details[0]["quantization"]
    x = ImagePreprocessing()(photos["chelsea.jpg"])[None]
    (q,) = model.run([quantize(x, si, zi)])
    w, b, _ = md.classifier.dense[0]
    logits = dequantize(q, so, zo) @ w + b
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()

    server = ServerThread(ServerConfig(models={"resnet50": path}))
    try:
        client = PredictionClient("127.0.0.1", server.port, timeout=600, retry_delays=())
        scores = client.score_file(photos["chelsea.jpg"])
    finally:
        server.stop()
    assert scores.shape == (1000,) and abs(float(scores.sum()) - 1) < 1e-4
    np.testing.assert_allclose(scores, expected[0], rtol=1e-4, atol=1e-6)
