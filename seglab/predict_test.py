"""seglab.predict with stand-in models whose outputs are known."""

import keras
import numpy as np
import pytest
from PIL import Image

from seglab import predict
from seglab.models.heads import SegmentationOutput


def constant_saliency_model(value, size=16):
    """Outputs probability ``value`` everywhere, as a list like the deep-supervision models."""
    inputs = keras.Input((size, size, 3))
    zeros = keras.layers.Conv2D(1, 1, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    logit = float(np.log(value / (1.0 - value)))
    fused = keras.layers.Rescaling(0.0, offset=logit)(zeros)
    return keras.Model(
        inputs,
        [
            SegmentationOutput("sigmoid")(fused),
            SegmentationOutput("sigmoid", prediction=False)(fused),
        ],
    )


def left_right_model(size=16):
    """Three classes: logits favour class 0 on the left half, class 2 on the right half."""
    inputs = keras.Input((size, size, 3))
    columns = np.linspace(-1.0, 1.0, size, dtype="float32")
    logits = np.stack([-columns, np.zeros_like(columns), columns], axis=-1)  # (W, 3)
    constant = np.broadcast_to(logits, (size, size, 3)).copy()
    zeros = keras.layers.Conv2D(3, 1, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    outputs = keras.layers.Rescaling(1.0)(zeros) + constant
    return keras.Model(inputs, SegmentationOutput("linear")(outputs))


def test_prediction_and_training_give_a_model_the_same_input(tmp_path):
    """A 1000x700 photo shrunk to 128 px: the prediction path and make_dataset resize with
    the same function (antialiased), so the model sees the same pixels."""
    from seglab.data import SegmentationSet, make_dataset

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8)
    # High-frequency stripes: without antialiasing the two paths would differ widely.
    photo[:, ::2] = 255
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(np.zeros((700, 1000), np.uint8)).save(tmp_path / "photo_mask.png")
    source = SegmentationSet(
        name="one photo",
        pairs=((str(tmp_path / "photo.png"), str(tmp_path / "photo_mask.png")),),
        mask_kind="class",
        num_classes=2,
    )
    trained_on = next(iter(make_dataset(source, image_size=128, batch_size=1)))[0].numpy()[0]
    served = predict.prepare_image(predict.read_image(tmp_path / "photo.png"), (128, 128))
    np.testing.assert_array_equal(served, trained_on)
    naive = keras.ops.convert_to_numpy(
        keras.ops.image.resize(photo[None].astype("float32"), (128, 128))
    )[0]
    assert np.abs(naive - served).max() > 20  # the antialiasing matters for this image


def test_saliency_masks_hold_0_to_255_at_the_original_size(tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((23, 41, 4), 200, np.uint8), "RGBA").save(image)
    result = predict.predict_files(
        constant_saliency_model(0.5),
        [image],
        tmp_path / "out",
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


def test_flip_averages_the_image_and_its_mirror():
    model = left_right_model()
    image = np.zeros((16, 16, 3), np.uint8)
    plain = predict.predict_image(model, image)
    flipped = predict.predict_image(model, image, flip=True)
    # The mirror's prediction is the left-right model's reversed: the average is symmetric.
    np.testing.assert_allclose(flipped, (plain + plain[:, ::-1]) / 2.0, atol=1e-6)


def test_a_model_without_declared_outputs_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    with pytest.raises(ValueError, match="SegmentationOutput"):
        predict.predict_files(model, [tmp_path], tmp_path / "out")


def test_a_large_image_is_tiled_at_full_resolution(tmp_path):
    """--tile: a 4x larger image than the tile, predicted window by window, written at its
    own size, equal to the untiled prediction of a pointwise model."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros")(inputs)
    model = keras.Model(
        inputs, SegmentationOutput("sigmoid")(keras.layers.Rescaling(1 / 255)(x) - 1.5)
    )
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    tiled = predict.predict_image(model, image, tile=64)
    whole = np.asarray(model.predict_on_batch(image[None].astype("float32")))[0]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    Image.fromarray(image).save(tmp_path / "big.png")
    predict.predict_files(model, [tmp_path / "big.png"], tmp_path / "out", tile=64)
    assert np.asarray(Image.open(tmp_path / "out" / "big_mask.png")).shape == (256, 256)


def mirror_equivariant_model(size=None):
    """Three classes from the horizontal brightness gradient: class 0 ("Right-arm") where the
    image gets darker to the right, class 2 ("Left-arm") where it gets brighter. In a mirror
    image the gradient changes sign, so the model calls the mirrored parts by the other side's
    name, as a model that knows left from right does."""
    inputs = keras.Input((size, size, 3))
    gradient = keras.layers.Conv2D(1, (1, 3), padding="same", use_bias=False)
    x = gradient(inputs)
    kernel = np.zeros((1, 3, 3, 1), "float32")
    kernel[0, :, 0, 0] = [-0.05, 0.0, 0.05]  # red channel: right neighbour minus left
    gradient.set_weights([kernel])
    negated, zeros = keras.layers.Rescaling(-1.0)(x), keras.layers.Rescaling(0.0)(x)
    logits = keras.layers.Concatenate()([negated, zeros, x])
    return keras.Model(inputs, SegmentationOutput("linear")(logits))


@pytest.mark.parametrize("tile", [None, 32])
def test_flip_pairs_swap_the_mirrored_left_and_right_classes(tile):
    """Flip TTA is right for a left/right-aware model only with the classes swapped back: the
    mirror pass then agrees with the plain one; without the pairs classes 0 and 2 average to
    a tie everywhere."""
    model = mirror_equivariant_model(size=None if tile else 64)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    options = {"image_size": 64, "tile": tile}
    plain = predict.predict_image(model, image, **options)
    assert np.abs(plain[..., 0] - plain[..., 2]).mean() > 0.2  # a sure left/right call
    paired = predict.predict_image(model, image, flip=True, flip_pairs=[(0, 2)], **options)
    np.testing.assert_allclose(paired, plain, atol=1e-5)
    unpaired = predict.predict_image(model, image, flip=True, **options)
    np.testing.assert_allclose(unpaired[..., 0], unpaired[..., 2], atol=1e-5)
    assert np.mean(unpaired.argmax(-1) != plain.argmax(-1)) > 0.3


def test_flip_pairs_reach_the_written_masks(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    model = mirror_equivariant_model(size=64)
    expected = predict.predict_image(model, image).argmax(-1)
    predict.predict_files(model, [tmp_path], tmp_path / "out", flip=True, flip_pairs=[(0, 2)])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out/photo_mask.png")), expected)


def test_the_cihp_flip_pairs_are_its_left_and_right_parts():
    from seglab.data.cihp import CIHP_CLASS_NAMES, CIHP_FLIP_PAIRS

    named = [(CIHP_CLASS_NAMES[a], CIHP_CLASS_NAMES[b]) for a, b in CIHP_FLIP_PAIRS]
    assert named == [
        ("Left-arm", "Right-arm"),
        ("Left-leg", "Right-leg"),
        ("Left-shoe", "Right-shoe"),
    ]
    assert predict.mirror_class_pairs(CIHP_CLASS_NAMES) == CIHP_FLIP_PAIRS
    assert predict.mirror_class_pairs(["background", "eye_left", "eye_right", "leftover"]) == (
        (1, 2),
    )
    assert predict.mirror_class_pairs(None) == ()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([(0, 3)], "from 0 to 2"),
        ([(0, 1), (1, 2)], "more than one place"),
        ([(0, 1, 2)], "pair of class ids"),
    ],
)
def test_bad_flip_pairs_are_refused_before_any_file_is_read(tmp_path, pairs, message):
    from seglab.errors import SettingError

    with pytest.raises(SettingError, match=message):
        predict.predict_files(left_right_model(), [tmp_path / "none"], tmp_path, flip_pairs=pairs)
    with pytest.raises(SettingError, match="one channel"):
        predict.predict_image(
            constant_saliency_model(0.5), np.zeros((4, 4, 3)), flip_pairs=[(0, 1)]
        )


def test_seglab_predict_tta_swaps_the_classes_a_run_folder_names_left_and_right(tmp_path):
    import json

    from seglab import cli

    model = mirror_equivariant_model(size=64)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    names = ["Right-arm", "Background", "Left-arm"]
    (run / "config.json").write_text(json.dumps({"class_names": names, "status": "finished"}))
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    expected = predict.predict_image(model, image).argmax(-1)

    argv = ["predict", str(run), str(tmp_path / "photo.png"), "--out", str(tmp_path / "masks")]
    assert cli.main([*argv, "--tta"]) == 0
    mask = np.asarray(Image.open(tmp_path / "masks" / "photo_mask.png"))
    np.testing.assert_array_equal(mask, expected)
