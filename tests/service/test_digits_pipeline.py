"""The shipped digits classifier as a served pipeline (what `make demo` scores offline): held-out digits
rendered as PNGs, scored through every stage, against LiteRT's reference kernels on the same pixels
quantized apart from the service, and against the true labels."""

import numpy as np
import pytest


@pytest.mark.parametrize("backend", ["golden", "emulator"])
def test_digits_pipeline_on_held_out_pngs(tmp_path, backend):
    from PIL import Image

    from onda.host.models import digits
    from onda.host.models.digits.pipeline import build_pipeline, held_out_pngs
    from onda.host.pipeline import ModelDefinition
    from onda.host.verify import ReferenceModel
    from onda.host.service.model import ServedModel
    from onda.sim.golden.kernels import quantize

    zip_path = build_pipeline(tmp_path / "digits.zip")
    pngs = held_out_pngs(tmp_path / "png", 60)
    model = ServedModel("digits", ModelDefinition.load(zip_path), backend, tmp_path)
    ref = ReferenceModel(digits.TFLITE, preserve_all_tensors=False)
    scale, zp = ref.input_details[0]["quantization"]
    right = 0
    for path, truth in pngs:
        scores, _ = model.score_here([path.read_bytes()])
        assert scores.shape == (1, 10) and abs(float(scores.sum()) - 1) < 1e-5  # the softmax head
        pixels = np.asarray(Image.open(path), dtype=np.float32)[None, ..., None]  # 16x16 grey, 0..255
        (logits,) = ref.run([quantize(pixels * np.float32(1 / 255), scale, zp)])
        assert int(np.argmax(scores)) == int(np.argmax(logits)), path.name
        right += int(np.argmax(scores)) == truth
    assert right >= 0.9 * len(pngs), f"{right} of {len(pngs)} held-out digits right"
