import keras
import numpy as np
import pytest

from seglab.testing.models import (
    check_keras_round_trip,
    check_mixed_precision,
    check_parameter_counts,
    dtype_policy,
    random_images,
)


def _tiny(output_dtype="float32"):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    outputs = keras.layers.Activation("linear", dtype=output_dtype, name="out")(x)
    return keras.Model(inputs, outputs)


def test_the_checks_pass_on_a_well_behaved_model(tmp_path):
    images = random_images(2, 8, 8)
    check_mixed_precision(_tiny, images, float16_layer="conv")
    check_keras_round_trip(_tiny(), images, tmp_path / "tiny.keras")
    check_parameter_counts(_tiny(), total=56, trainable=56, non_trainable=0)


def test_the_checks_fail_when_they_should():
    images = random_images(1, 8, 8)
    with pytest.raises(AssertionError):  # float16 output under mixed precision
        check_mixed_precision(lambda: _tiny(output_dtype=None), images, float16_layer="conv")
    with pytest.raises(AssertionError, match="trainable"):
        check_parameter_counts(_tiny(), trainable=55)


def test_dtype_policy_is_restored_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), dtype_policy("mixed_float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError
    assert keras.config.dtype_policy().name == before


def test_random_images_are_0_to_255_rgb():
    images = random_images(3, 4, 5, seed=1)
    assert images.shape == (3, 4, 5, 3) and images.dtype == np.float32
    assert 200 < images.max() <= 255 and images.min() < 50
