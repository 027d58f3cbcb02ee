import numpy as np
import tensorflow as tf
from PIL import Image

from seglab.data.decoding import decode_image
from seglab.predict import read_image


def test_jpeg_pixels_in_training_equal_those_prediction_reads(tmp_path):
    # A textured photo-like image: the fast and the accurate IDCT differ on fine detail.
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 96 * 80 * 3).reshape(96, 80, 3)
    pixels = np.clip(smooth + rng.normal(0, 60, smooth.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=90)

    trained_on = decode_image(tf.io.read_file(str(path))).numpy()
    predicted_on = read_image(path)
    np.testing.assert_array_equal(trained_on, predicted_on)
    fast = tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3).numpy()
    assert np.abs(fast.astype(int) - predicted_on).max() > 0  # the default IDCT would differ


def test_png_decodes_as_before(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(decode_image(tf.io.read_file(str(path))).numpy(), pixels)
