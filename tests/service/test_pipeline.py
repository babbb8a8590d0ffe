"""Pipelines: Brainwave's preprocessing checked against Keras' own, the zip format and its errors, the classifier."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from onda.host.pipeline import (FeaturizerStage, ImageError, ImagePreprocessing, ImagePreprocessStage, KerasStage,
                                ModelDefinition, PipelineError)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def test_mean_subtraction_and_channel_order_match_keras_resnet50():
    from keras.applications.resnet50 import preprocess_input

    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    ours = ImagePreprocessing().normalize(rgb)
    keras_caffe = np.asarray(preprocess_input(rgb.astype(np.float32)[None].copy()))[0]
    np.testing.assert_allclose(ours, keras_caffe, atol=1e-4)


def test_resize_short_side_and_centre_crop_against_tf_image():
    """On a lossless image the PIL path agrees with TF's: bilinear resize of the short side to 256 then the
    central 224x224 (PIL antialiases when shrinking, TF's bilinear does not: compare on an upscale)."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)  # upscaled to 256x341
    ours = ImagePreprocessing().resize_crop(ImagePreprocessing().decode(encode(rgb)))
    resized = tf.image.resize(rgb[None].astype(np.float32), (256, 341), method="bilinear", antialias=False)[0].numpy()
    y0, x0 = (256 - 224) // 2, (341 - 224) // 2
    theirs = resized[y0:y0 + 224, x0:x0 + 224]
    assert ours.shape == (224, 224, 3)
    assert np.abs(ours.astype(np.float32) - theirs).mean() < 0.6  # PIL rounds to uint8: 0.25 on average


def test_jpeg_draft_decoding_stays_close_to_full_decoding():
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((1280, 960), Image.BILINEAR))
    data = encode(big, "JPEG")
    pre = ImagePreprocessing()
    fast = pre(data)
    slow = pre.normalize(pre.resize_crop(Image.open(io.BytesIO(data)).convert("RGB")))
    assert fast.shape == (224, 224, 3)
    assert np.abs(fast - slow).mean() < 2.0


@pytest.mark.parametrize("data, message", [
    (b"", "empty image"),
    (b"GIF89a-but-not-really", "corrupt image|not a decodable image"),
    (b"%PDF-1.4 hello", "not a decodable image"),
])
def test_bad_images(data, message):
    with pytest.raises(ImageError, match=message):
        ImagePreprocessing()(data)


def test_truncated_jpeg_is_an_image_error(photos):
    data = photos["chelsea.jpg"]
    with pytest.raises(ImageError, match="corrupt image"):
        ImagePreprocessing()(data[: len(data) // 2])


def test_dense_classifier_fast_path_equals_keras(tiny_classifier):
    x = np.random.default_rng(5).normal(size=(4, 16)).astype(np.float32)
    stage = KerasStage(tiny_classifier)
    assert stage.dense is not None and [a for _, _, a in stage.dense] == ["relu", "softmax"]
    np.testing.assert_allclose(stage(x), np.asarray(tiny_classifier(x, training=False)), rtol=1e-5, atol=1e-6)


def test_zip_round_trip(tmp_path, tiny_tflite, tiny_classifier):
    md = ModelDefinition("tiny", labels=["a", "b"])
    md.pipeline += [ImagePreprocessStage(ImagePreprocessing(resize_short=250, crop=224)),
                    FeaturizerStage(tiny_tflite.read_bytes()), KerasStage(tiny_classifier)]
    path = md.save(tmp_path / "m.zip")
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert set(z.namelist()) == {"manifest.json", "featurizer.tflite", "classifier.keras", "classifier.npz",
                                     "labels.txt"}
    assert manifest["version"] == 1 and [s["type"] for s in manifest["pipeline"]] == [
        "image_preprocess", "featurizer", "keras_classifier"]
    assert manifest["pipeline"][1]["inputs"][0]["shape"] == [1, 224, 224, 3]
    back = ModelDefinition.load(path)
    assert back.name == "tiny" and back.labels == ["a", "b"]
    assert back.preprocess.params.resize_short == 250
    assert back.featurizer.tflite == tiny_tflite.read_bytes()
    x = np.random.default_rng(6).normal(size=(2, 16)).astype(np.float32)
    np.testing.assert_allclose(back.classifier(x), np.asarray(tiny_classifier(x)), rtol=1e-5, atol=1e-6)
    # The Keras model itself is in the zip too, and loads.
    keras_model = back.classifier.keras_model()
    np.testing.assert_allclose(np.asarray(keras_model(x)), np.asarray(tiny_classifier(x)), rtol=1e-5, atol=1e-6)


def _rewrite(src, dst, drop=(), manifest_patch=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            if item in drop:
                continue
            data = zin.read(item)
            if item == "manifest.json" and manifest_patch:
                m = json.loads(data)
                manifest_patch(m)
                data = json.dumps(m).encode()
            zout.writestr(item, data)
    return dst


def test_load_errors(tmp_path, pipeline_zips):
    src = pipeline_zips["tiny"]
    cases = {
        "no such model definition file": tmp_path / "absent.zip",
        "manifest version 2 is not supported": _rewrite(src, tmp_path / "v2.zip",
                                                        manifest_patch=lambda m: m.update(version=2)),
        "featurizer model file 'featurizer.tflite' is missing": _rewrite(src, tmp_path / "nofeat.zip",
                                                                         drop=["featurizer.tflite"]),
        "manifest file 'manifest.json' is missing": _rewrite(src, tmp_path / "noman.zip", drop=["manifest.json"]),
        "stage 0 has unknown type 'tensorflow_graph'": _rewrite(
            src, tmp_path / "kind.zip", manifest_patch=lambda m: m["pipeline"][0].update(type="tensorflow_graph")),
        "not an onda pipeline": _rewrite(src, tmp_path / "fmt.zip", manifest_patch=lambda m: m.update(format="x")),
    }
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    cases["not a valid zip"] = truncated
    for message, path in cases.items():
        with pytest.raises(PipelineError, match=message):
            ModelDefinition.load(path)
    corrupt = tmp_path / "crc.zip"
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:  # flip bytes inside the stored featurizer: a CRC error on read
        info = z.getinfo("featurizer.tflite")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 40
    data[offset:offset + 8] = bytes(b ^ 0xFF for b in data[offset:offset + 8])
    corrupt.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="corrupt"):
        ModelDefinition.load(corrupt)


def test_pipeline_structure_errors(tiny_tflite):
    md = ModelDefinition()
    md.pipeline.append(ImagePreprocessStage())
    with pytest.raises(PipelineError, match="exactly one featurizer stage, got 0"):
        md.save("/nonexistent/never-written.zip")
    md.pipeline.insert(0, FeaturizerStage(tiny_tflite.read_bytes()))
    with pytest.raises(PipelineError, match="stages must be"):
        md.validate()
    with pytest.raises(PipelineError, match="not a .tflite flatbuffer"):
        FeaturizerStage(b"not a model at all")


def test_tensorflow_stage_brainwave_graph_agrees_with_pil_path(photos):
    """Brainwave's TF preprocessing graph and onda's PIL path compute the same thing (up to JPEG decoders
    and, when shrinking, PIL's antialiasing)."""
    from onda.host.pipeline import TensorflowStage, brainwave_preprocessing

    tf_stage = TensorflowStage(brainwave_preprocessing())
    pre = ImagePreprocessing()
    for name, data in photos.items():  # short side 256 already: decode + crop + mean only
        a, b = tf_stage(data), pre(data)
        assert a.shape == b.shape == (224, 224, 3)
        assert np.abs(a - b).mean() < 1.5, name
    smooth = np.asarray(Image.open(io.BytesIO(photos["coffee.jpg"])).resize((900, 600), Image.BICUBIC))
    big = encode(smooth, "PNG")  # shrunk to a short side of 256 by both
    assert np.abs(tf_stage(big) - pre(big)).mean() < 2.0
    with pytest.raises(ImageError, match="preprocessing failed"):
        tf_stage(b"not an image")


def test_tensorflow_stage_round_trip_and_errors(tmp_path, tiny_tflite, photos):
    from onda.host.pipeline import TensorflowStage, brainwave_preprocessing

    md = ModelDefinition("tfpre")
    md.pipeline += [TensorflowStage(brainwave_preprocessing()), FeaturizerStage(tiny_tflite.read_bytes())]
    path = md.save(tmp_path / "tfpre.zip")
    back = ModelDefinition.load(path)
    assert back.preprocess.type == "tensorflow_preprocess"
    data = photos["rocket.jpg"]
    np.testing.assert_array_equal(back.preprocess(data), TensorflowStage(brainwave_preprocessing())(data))
    broken = _rewrite(path, tmp_path / "broken.zip", drop=["preprocess_savedmodel/saved_model.pb"])
    with pytest.raises(PipelineError, match="SavedModel file 'preprocess_savedmodel/saved_model.pb' is missing"):
        ModelDefinition.load(broken)
    two = ModelDefinition()
    two.pipeline += [ImagePreprocessStage(), TensorflowStage(brainwave_preprocessing()),
                     FeaturizerStage(tiny_tflite.read_bytes())]
    with pytest.raises(PipelineError, match="stages must be"):
        two.validate()


@pytest.mark.parametrize("order, scale, zero_point", [("BGR", 0.9, -10), ("BGR", 1.7, 3), ("RGB", 0.45, 0),
                                                      ("L", 0.8, -5)])
def test_table_lookup_quantization_equals_float_path(photos, order, scale, zero_point):
    from onda.host.pipeline import quantize_input
    from onda.host.pipeline.preprocess import QuantizedPreprocessing

    pre = ImagePreprocessing(channel_order=order)
    fast = QuantizedPreprocessing(pre, scale, zero_point)
    for name, data in photos.items():
        np.testing.assert_array_equal(fast(data), quantize_input(pre(data), scale, zero_point), err_msg=name)


def test_grey_preprocessing_gives_one_channel_of_luminance(photos):
    """channel_order "L": one channel, the photo's luminance (PIL's ITU-R 601-2 conversion), mean and scale applied."""
    from PIL import Image
    import io

    pre = ImagePreprocessing(channel_order="L", mean=(10.0, 0.0, 0.0), scale=0.5)
    rgb_pre = ImagePreprocessing(channel_order="RGB", mean=(0.0, 0.0, 0.0))
    data = photos["chelsea.jpg"]
    x = pre(data)
    assert x.shape == (224, 224, 1) and x.dtype == np.float32
    rgb = rgb_pre.resize_crop(rgb_pre.decode(data)).astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])  # what convert("L") computes, to within its integer rounding
    assert np.abs((x[..., 0] / 0.5 + 10) - luma).mean() < 2.0
    grey_png = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode="L").save(grey_png, format="PNG")
    y = ImagePreprocessing(resize_short=16, crop=16, channel_order="L", mean=(0.0, 0.0, 0.0))(grey_png.getvalue())
    np.testing.assert_array_equal(y[..., 0], np.arange(256, dtype=np.float32).reshape(16, 16))
