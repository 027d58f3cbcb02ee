import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFilter

from seglab.losses.ssim import gaussian_window, ssim


def _ssim(*args, **kwargs):
    return keras.ops.convert_to_numpy(ssim(*args, **kwargs))


def _masks(folder, names, size):
    """Masks scaled into [0, 1], resized to ``size``, plus blurred and shifted copies."""
    masks, blurred, shifted = [], [], []
    for name in names:
        mask = Image.open(folder / "masks" / f"{name}.png").convert("L").resize(size)
        array = np.asarray(mask, np.float32) / 255.0
        masks.append(array)
        blurred.append(np.asarray(mask.filter(ImageFilter.GaussianBlur(3)), np.float32) / 255.0)
        shifted.append(np.roll(array, shift=(5, -7), axis=(0, 1)))
    return [np.stack(group)[..., None] for group in (masks, blurred, shifted)]


def test_window_is_tensorflows_normalised_gaussian():
    window = gaussian_window(11, 1.5)
    assert window.shape == (11, 11)
    np.testing.assert_allclose(window.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(window, window.T)
    np.testing.assert_allclose(window[5, 5] / window[5, 6], np.exp(0.5 / 1.5**2), rtol=1e-5)


@pytest.mark.parametrize(
    "shape, options",
    [
        ((4, 32, 32, 1), {}),
        ((3, 40, 27, 3), {}),
        ((2, 24, 30, 2), {"filter_size": 7, "filter_sigma": 1.0, "k1": 0.02, "k2": 0.05}),
    ],
)
def test_matches_tf_image_ssim_on_random_images(shape, options):
    rng = np.random.default_rng(0)
    a = rng.random(shape, dtype=np.float32)
    noisy = np.clip(a + rng.normal(0.0, 0.2, shape), 0.0, 1.0).astype(np.float32)
    unrelated = rng.random(shape, dtype=np.float32)
    for b in (noisy, unrelated):
        expected = tf.image.ssim(a, b, max_val=1.0, **options).numpy()
        np.testing.assert_allclose(_ssim(a, b, max_val=1.0, **options), expected, atol=1e-5)


def test_matches_tf_image_ssim_with_another_dynamic_range():
    rng = np.random.default_rng(1)
    a = rng.random((2, 20, 20, 1), dtype=np.float32) * 255.0
    b = rng.random((2, 20, 20, 1), dtype=np.float32) * 255.0
    expected = tf.image.ssim(a, b, max_val=255.0).numpy()
    np.testing.assert_allclose(_ssim(a, b, max_val=255.0), expected, atol=1e-5)


def test_matches_tf_image_ssim_on_real_masks(sample_data):
    folder = sample_data("sod_sample")
    names = (folder / "list.txt").read_text().split()[:6]
    masks, blurred, shifted = _masks(folder, names, (96, 80))
    assert masks.min() == 0.0 and masks.max() == 1.0
    for other in (blurred, shifted):
        expected = tf.image.ssim(masks, other, max_val=1.0).numpy()
        np.testing.assert_allclose(_ssim(masks, other), expected, atol=1e-5)
    # Blurring keeps more structure than misplacing the object.
    assert np.all(_ssim(masks, blurred) > _ssim(masks, shifted))
    np.testing.assert_allclose(_ssim(masks, masks), 1.0, atol=1e-6)


def test_single_image_gives_a_scalar():
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 16, 16, 1), dtype=np.float32)
    value = _ssim(a, b)
    assert value.shape == ()
    np.testing.assert_allclose(value, tf.image.ssim(a, b, max_val=1.0).numpy(), atol=1e-5)


def test_images_smaller_than_the_window_are_refused():
    small = np.zeros((1, 8, 32, 1), np.float32)
    with pytest.raises(ValueError, match="at least filter_size=11"):
        ssim(small, small)
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        ssim(np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32))
