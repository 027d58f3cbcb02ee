"""Exported SavedModel, TFLite and ONNX files, run by their own runtimes, give Keras' output."""

import importlib.util
import time

import keras
import numpy as np
import pytest
from PIL import Image

from seglab import export
from seglab.models.blocks import ResizeLike
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input
from seglab.models.u2net.rsu import RSU

# Float32 graphs rewritten by the converters differ from Keras by rounding only.
TOLERANCE = 1e-4


def tiny_model(input_shape=(32, 32, 3), seed=1):
    """A few-layer model with what the real ones have: preprocessing inside, custom layers
    (RSU, ResizeLike), a logits prediction and a side output."""
    keras.utils.set_random_seed(seed)
    inputs, x = image_input(input_shape, "imagenet")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = RSU(3, 4, 8, name="rsu")(x)
    side = SegmentationOutput("sigmoid", prediction=False, name="side")(
        keras.layers.Conv2D(1, 1)(x)
    )
    x = ResizeLike(name="upsample")([x, inputs])
    logits = SegmentationOutput("linear", name="logits")(
        keras.layers.Conv2D(2, 3, padding="same")(x)
    )
    return keras.Model(inputs, [logits, side], name="tiny")


def sample_images(sample_data, size, count=1):
    """Real photos from the salient-object sample, resized, as float32 0..255."""
    folder = sample_data("sod_sample") / "images"
    paths = sorted(folder.glob("*.jpg"))[:count]
    images = [
        np.asarray(Image.open(path).convert("RGB").resize(size[::-1], Image.BILINEAR))
        for path in paths
    ]
    return np.stack(images).astype(np.float32)


def prediction(model, images):
    """Output 0 of ``model`` (its only output, or the first of several)."""
    outputs = model(images, training=False)
    return keras.ops.convert_to_numpy(outputs[0] if isinstance(outputs, list) else outputs)


def max_difference(model, path, format, images):
    expected = prediction(model, images)
    actual = export.load_exported(path, format)(images)
    assert actual.shape == expected.shape
    return float(np.max(np.abs(actual - expected))), expected


@pytest.mark.parametrize("format", export.FORMATS)
def test_each_format_gives_output_0_of_the_keras_model(format, tmp_path, sample_data):
    model = tiny_model()
    images = sample_images(sample_data, (32, 32), count=2)
    path = tmp_path / {"saved_model": "model", "tflite": "m.tflite", "onnx": "m.onnx"}[format]

    result = export.export(model, path, format)

    assert result.path == path and path.exists()
    assert result.input_shape == (None, 32, 32, 3)
    assert result.output_shape == (None, 32, 32, 2)  # the logits, not the side output
    assert result.max_abs_difference is not None and result.max_abs_difference <= TOLERANCE
    difference, expected = max_difference(model, path, format, images)
    assert np.std(expected) > 0.05  # the comparison is not between near-constant maps
    assert difference <= TOLERANCE
    print(f"{format}: max |diff| {difference:.2e}, export {result.export_seconds:.1f} s")


def test_tflite_file_takes_any_batch_size_in_either_interpreter(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "m.tflite"
    export.export(model, path, "tflite", check=False)
    litert = export.load_exported(path, "tflite")
    # Without ai-edge-litert, TensorFlow's own (deprecated) interpreter runs the file.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "ai_edge_litert" else real_find_spec(name, *args),
    )
    assert export.tflite_runtime_name() == "tf.lite.Interpreter"
    tf_lite = export.load_exported(path, "tflite")
    for batch in (1, 3):
        images = export.check_images((32, 32, 3), count=batch, seed=batch)
        expected = prediction(model, images)
        np.testing.assert_allclose(litert(images), expected, atol=TOLERANCE)
        np.testing.assert_allclose(tf_lite(images), expected, atol=TOLERANCE)


def test_free_size_model_is_exported_at_the_given_size(tmp_path):
    model = tiny_model(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="any size: give the size"):
        export.export(model, tmp_path / "m.onnx", "onnx")

    result = export.export(model, tmp_path / "m.onnx", "onnx", image_size=(32, 48))

    assert result.input_shape == (None, 32, 48, 3)
    assert result.max_abs_difference <= TOLERANCE


def test_size_that_contradicts_the_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="takes 32x32 images; image_size 64x64"):
        export.export(tiny_model(), tmp_path / "m.onnx", "onnx", image_size=64)


def test_mixed_precision_model_is_exported_in_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("rsu").compute_dtype == "float16"

    copy = export.float32_model(model)
    assert {layer.dtype_policy.name for layer in export._all_layers(copy)} == {"float32"}
    images = export.check_images((32, 32, 3))
    # Same weights: the float32 copy agrees with the float16 model to float16 precision.
    np.testing.assert_allclose(
        prediction(copy, images),
        prediction(model, images).astype(np.float32),
        atol=0.05,
    )
    result = export.export(model, tmp_path / "m.onnx", "onnx")
    assert result.max_abs_difference <= TOLERANCE


def test_check_fails_when_the_file_computes_something_else(tmp_path):
    result = export.export(tiny_model(seed=1), tmp_path / "m.onnx", "onnx", check=False)
    with pytest.raises(export.ExportCheckError, match="differs from the Keras model"):
        export.check_export(tiny_model(seed=2), result)


def test_destination_rules(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"m\.lite: a TFLite file name must end with \.tflite"):
        export.export(model, tmp_path / "m.lite", "tflite")
    (tmp_path / "m.onnx").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="m.onnx: already exists"):
        export.export(model, tmp_path / "m.onnx", "onnx")
    export.export(model, tmp_path / "m.onnx", "onnx", overwrite=True)
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no scratch left


def test_missing_model_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.keras: model not found"):
        export.export(tmp_path / "nothing.keras", tmp_path / "m.onnx", "onnx")
    with pytest.raises(ValueError, match="format must be one of saved_model, tflite, onnx"):
        export.export(tiny_model(), tmp_path / "m.pb", "pb")


def test_missing_converter_names_the_extra(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tf2onnx" else real_find_spec(name, *args),
    )
    with pytest.raises(
        export.MissingPackageError, match=r"'tf2onnx'.*pip install \"seglab\[export\]\""
    ):
        export.export(tiny_model(), tmp_path / "m.onnx", "onnx")
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------------------------------------
# Command line


def test_cli_exports_a_keras_file_and_checks_it(tmp_path, capsys):
    from seglab import cli

    model_path = tmp_path / "model.keras"
    tiny_model().save(model_path)
    out = tmp_path / "deploy" / "model.onnx"

    status = cli.main(["export", str(model_path), "--format", "onnx", "--out", str(out)])

    printed = capsys.readouterr().out
    assert status == cli.EXIT_OK, printed
    assert f"Wrote {out} (onnx" in printed
    assert "input 'images' float32 (B, 32, 32, 3), output float32 (B, 32, 32, 2)" in printed
    assert "Checked with onnxruntime: max |difference| to Keras = " in printed
    images = export.check_images((32, 32, 3), seed=5)
    expected = prediction(tiny_model(), images)
    np.testing.assert_allclose(export.load_exported(out, "onnx")(images), expected, atol=TOLERANCE)


def test_cli_exports_a_free_size_run_at_the_runs_image_size(tmp_path, capsys):
    import json

    from seglab import cli, training

    run = tmp_path / "run"
    run.mkdir()
    tiny_model(input_shape=(None, None, 3)).save(run / training.MODEL)
    (run / training.CONFIG).write_text(json.dumps({"image_size": 32, "status": "finished"}))
    out = tmp_path / "model.onnx"

    status = cli.main(["export", str(run), "--format", "onnx", "--out", str(out)])

    printed = capsys.readouterr().out
    assert status == cli.EXIT_OK, printed
    assert "input 'images' float32 (B, 32, 32, 3)" in printed
    assert "Checked with onnxruntime" in printed


def test_cli_errors(tmp_path, capsys, monkeypatch):
    from seglab import cli

    status = cli.main(["export", "x.keras", "--format", "pb", "--out", "x"])
    assert status == cli.EXIT_USAGE
    assert "invalid choice: 'pb'" in capsys.readouterr().err

    status = cli.main(["export", str(tmp_path / "no.keras"), "--format", "onnx", "--out", "x"])
    assert status == cli.EXIT_ERROR
    assert "no.keras: model not found" in capsys.readouterr().err

    model_path = tmp_path / "model.keras"
    tiny_model().save(model_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args),
    )
    out = tmp_path / "m.onnx"
    status = cli.main(["export", str(model_path), "--format", "onnx", "--out", str(out)])
    assert status == cli.EXIT_ERROR
    assert (
        "needs the 'onnxruntime' package, which is not installed: pip install \"seglab[export]\""
        in (capsys.readouterr().err)
    )


# ----------------------------------------------------------------------------------------------
# Real architectures (several outputs, custom layers, keras.applications encoder)


def _unet():
    from seglab.models import unet

    return unet(num_classes=3, input_shape=(64, 64, 3), encoder_weights=None)


def _u2netp():
    from seglab.models import u2netp

    return u2netp(input_shape=(64, 64, 3))


@pytest.mark.slow
@pytest.mark.parametrize("build", [_u2netp, _unet], ids=["u2netp", "unet"])
def test_real_models_in_every_format(build, tmp_path, sample_data):
    model = build()
    images = sample_images(sample_data, (64, 64))
    for format in export.FORMATS:
        path = tmp_path / {"saved_model": "model", "tflite": "m.tflite", "onnx": "m.onnx"}[format]
        start = time.perf_counter()
        result = export.export_model(model, path, format)
        seconds = time.perf_counter() - start
        difference, expected = max_difference(model, path, format, images)
        print(
            f"{model.name} {format}: max |diff| {difference:.2e} (output range "
            f"{expected.min():.3g}..{expected.max():.3g}), export {result.export_seconds:.1f} s "
            f"({seconds:.1f} s in all)"
        )
        assert difference <= TOLERANCE
