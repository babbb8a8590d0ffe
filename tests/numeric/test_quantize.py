"""`onda quantize` from Keras files with image-directory calibration, and the application models."""

import numpy as np
import pytest

from onda.host.cli import main
from onda.host.frontend import read_tflite
from onda.host.verify import compare, format_table


@pytest.fixture
def keras_file(tmp_path):
    import keras

    keras.utils.set_random_seed(4)
    i = keras.Input((20, 20, 3))
    x = keras.layers.Rescaling(1 / 255.0)(i)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(i, keras.layers.Dense(4)(x))
    path = tmp_path / "m.keras"
    model.save(path)
    return path


def write_images(directory, n, size=(31, 27)):
    from PIL import Image

    directory.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(directory / f"im{k}.png")


def test_keras_file_with_image_directory_calibration(keras_file, tmp_path, capsys):
    write_images(tmp_path / "calib", 5)
    out = tmp_path / "m.tflite"
    assert main(["quantize", str(keras_file), "--calibration", str(tmp_path / "calib"), "-o", str(out)]) == 0
    assert "5 calibration images" in capsys.readouterr().err
    g = read_tflite(out)
    assert g.input_tensors()[0].dtype == "int8" and g.output_tensors()[0].dtype == "int8"
    rows = compare(out, "golden", images=3)
    assert all(r.ok for r in rows), format_table(rows)


def test_weights_file_is_loaded(keras_file, tmp_path):
    """--weights PATH replaces the model's weights: the quantized weights change accordingly."""
    import keras

    model = keras.models.load_model(keras_file)
    model.set_weights([w * 0 + 0.5 for w in model.get_weights()])
    model.save_weights(tmp_path / "half.weights.h5")
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    assert main(["quantize", str(keras_file), "--random-calibration", "3", "-o", str(a)]) == 0
    assert main(["quantize", str(keras_file), "--weights", str(tmp_path / "half.weights.h5"),
                 "--random-calibration", "3", "-o", str(b)]) == 0
    conv = lambda p: [t.data for t in read_tflite(p).tensors.values() if t.data is not None and t.data.ndim == 4][0]
    wa, wb = conv(a), conv(b)
    assert wa.shape == wb.shape and not np.array_equal(wa, wb)
    assert np.all(wb == 127)  # constant weights quantize to the top of the symmetric range


def test_empty_calibration_directory(keras_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["quantize", str(keras_file), "--calibration", str(tmp_path / "empty"), "-o", str(tmp_path / "x.tflite")]) == 1
    assert "no images" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name,outputs", [("vgg16", 512), ("resnet101", 2048), ("resnet152", 2048)])
def test_application_featurizers_bit_exact(name, outputs, tmp_path):
    out = tmp_path / f"{name}.tflite"
    assert main(["quantize", name, "--weights", "random", "--seed", "1", "--random-calibration", "2", "-o", str(out)]) == 0
    assert read_tflite(out).output_tensors()[0].shape == (1, outputs)
    rows = compare(out, "golden", images=1)
    assert all(r.ok for r in rows), format_table(rows)
