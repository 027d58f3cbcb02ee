import keras
import numpy as np
import pytest

from seglab.models.blocks import ResizeLike, bilinear_resize


def free_size_model():
    image = keras.Input((None, None, 3))
    pooled = keras.layers.MaxPooling2D(2, padding="same")(image)
    return keras.Model(image, ResizeLike()([pooled, image]))


@pytest.mark.parametrize(
    "in_size, out_size", [((7, 9), (16, 20)), ((16, 20), (7, 9)), ((5, 5), (5, 5))]
)
def test_bilinear_resize_matches_tensorflow(in_size, out_size):
    tf = pytest.importorskip("tensorflow")
    images = np.random.default_rng(0).random((2, *in_size, 3), dtype=np.float32)
    ours = keras.ops.convert_to_numpy(bilinear_resize(images, *out_size))
    reference = tf.image.resize(images, out_size, method="bilinear").numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_free_size_model_predicts_at_sizes_not_multiple_of_32():
    model = free_size_model()
    for size in ((37, 45), (64, 64), (33, 31)):
        images = np.random.default_rng(1).random((1, *size, 3), dtype=np.float32)
        # predict() traces a graph with unknown sizes under TensorFlow: the case that breaks
        # ops.image.resize in Keras 3.15.
        assert model.predict(images, verbose=0).shape == (1, *size, 3)


def test_round_trips_through_a_keras_file(tmp_path):
    model = free_size_model()
    images = np.random.default_rng(2).random((1, 21, 19, 3), dtype=np.float32)
    model.save(tmp_path / "resize.keras")
    reloaded = keras.models.load_model(tmp_path / "resize.keras")
    np.testing.assert_allclose(reloaded(images), model(images), atol=1e-6)
    assert reloaded.layers[-1].get_config()["interpolation"] == "bilinear"
