"""seglab.predict with stand-in models whose outputs are known."""

import keras
import numpy as np
import pytest
from PIL import Image

from seglab import predict


def constant_saliency_model(value, size=16):
    """Outputs ``value`` everywhere, as a list like the deep-supervision models."""
    inputs = keras.Input((size, size, 3))
    zeros = keras.layers.Conv2D(1, 1, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    fused = keras.layers.Rescaling(0.0, offset=value)(zeros)
    return keras.Model(inputs, [fused, fused])


def left_right_model(size=16):
    """Three classes: logits favour class 0 on the left half, class 2 on the right half."""
    inputs = keras.Input((size, size, 3))
    columns = np.linspace(-1.0, 1.0, size, dtype="float32")
    logits = np.stack([-columns, np.zeros_like(columns), columns], axis=-1)  # (W, 3)
    constant = np.broadcast_to(logits, (size, size, 3)).copy()
    zeros = keras.layers.Conv2D(3, 1, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    outputs = keras.layers.Rescaling(1.0)(zeros) + constant
    return keras.Model(inputs, outputs)


def test_saliency_masks_hold_0_to_255_at_the_original_size(tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((23, 41, 4), 200, np.uint8), "RGBA").save(image)
    result = predict.predict_files(
        constant_saliency_model(0.5),
        [image],
        tmp_path / "out",
        normalization="unit",
        task="salient",
    )
    assert not result.failed
    mask = np.asarray(Image.open(tmp_path / "out" / "photo_mask.png"))
    assert mask.shape == (23, 41) and mask.dtype == np.uint8
    assert np.all(mask == 128)  # 0.5 * 255 rounded
    overlay = np.asarray(Image.open(tmp_path / "out" / "photo_overlay.png"))
    assert overlay.shape == (23, 41, 3)


def test_class_ids_follow_the_logits_after_resizing_back(tmp_path):
    image = tmp_path / "wide.jpg"
    Image.fromarray(np.zeros((10, 64, 3), np.uint8)).save(image)
    predict.predict_files(
        left_right_model(),
        [image],
        tmp_path / "out",
        normalization="unit",
        task="multiclass",
        num_classes=3,
    )
    mask = np.asarray(Image.open(tmp_path / "out" / "wide_mask.png"))
    assert mask.shape == (10, 64)
    assert np.all(mask[:, :28] == 0) and np.all(mask[:, 36:] == 2)


def test_read_image_modes():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (5, 7), dtype=np.uint8)
    assert predict.read_image(_png(Image.fromarray(gray, "L"))).shape == (5, 7, 3)
    deep = np.full((4, 4), 65535, np.uint16)
    assert np.all(predict.read_image(_png(Image.fromarray(deep))) == 255)
    rgba = rng.integers(0, 255, (3, 3, 4), dtype=np.uint8)
    np.testing.assert_array_equal(
        predict.read_image(_png(Image.fromarray(rgba, "RGBA"))), rgba[..., :3]
    )


def _png(image):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def test_unreadable_and_missing_files_are_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff nothing more")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = predict.predict_files(
        constant_saliency_model(0.2),
        [broken, tmp_path / "missing.png", empty],
        tmp_path / "out",
        normalization="unit",
        task="salient",
    )
    assert not result.written
    reasons = {path.name: reason for path, reason in result.failed}
    assert reasons["missing.png"] == "file not found"
    assert "no image files" in reasons["empty"]
    assert "broken.jpg" in result.summary() and "3 file(s) failed" in result.summary()


def test_free_size_model_needs_an_image_size():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    assert predict.model_input_size(model, 96) == (96, 96)
    with pytest.raises(ValueError, match="image_size"):
        predict.model_input_size(model)
