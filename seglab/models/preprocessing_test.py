import keras
import numpy as np
import pytest

from seglab.models.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATIONS,
    ImagePreprocessing,
    image_input,
    preprocessing_of,
)

PIXELS = np.random.default_rng(5).integers(0, 256, (2, 5, 7, 3)).astype(np.float32)


def _apply(mode, pixels=PIXELS):
    return keras.ops.convert_to_numpy(ImagePreprocessing(mode)(pixels))


def test_modes_match_keras_applications_and_torchvision():
    np.testing.assert_allclose(
        _apply("resnet"), keras.applications.resnet50.preprocess_input(PIXELS.copy()), atol=1e-4
    )
    np.testing.assert_allclose(
        _apply("mobilenet"),
        keras.applications.mobilenet_v2.preprocess_input(PIXELS.copy()),
        atol=1e-6,
    )
    np.testing.assert_allclose(_apply("unit"), PIXELS / 255.0, atol=1e-7)
    expected = (PIXELS / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(_apply("imagenet"), expected, atol=1e-5)


def test_official_u2net_mode_divides_each_image_by_its_own_maximum():
    dim = PIXELS * np.array([[[[0.5]]], [[[1.0]]]], np.float32)  # image 0 at half brightness
    top = dim.reshape(2, -1).max(axis=1)[:, None, None, None]
    expected = (dim / top - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(_apply("u2net_official", dim), expected, atol=1e-5)
    # Brightness does not matter after dividing by the maximum.
    np.testing.assert_allclose(
        _apply("u2net_official", dim)[0], _apply("u2net_official", PIXELS)[0], atol=1e-5
    )
    black = _apply("u2net_official", np.zeros((1, 2, 2, 3), np.float32))
    assert np.isfinite(black).all()


def test_unknown_mode_lists_the_known_ones():
    with pytest.raises(ValueError, match="'unit', 'mobilenet'"):
        ImagePreprocessing("caffe")


@pytest.mark.parametrize("mode", list(NORMALIZATIONS))
def test_round_trips_through_a_keras_file(mode, tmp_path):
    inputs, x = image_input((4, 4, 3), mode)
    model = keras.Model(inputs, x)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert preprocessing_of(loaded).mode == mode
    np.testing.assert_allclose(
        loaded.predict(PIXELS[:, :4, :4], verbose=0), _apply(mode, PIXELS[:, :4, :4]), atol=1e-5
    )


def test_without_normalization_the_input_goes_through_unchanged():
    inputs, x = image_input((4, 4, 3), None)
    assert x is inputs and preprocessing_of(keras.Model(inputs, x)) is None
