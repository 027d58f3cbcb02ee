import keras
import numpy as np
import pytest
import tensorflow as tf

from seglab.losses.basnet import BASNetHybridLoss, soft_iou
from seglab.models.basnet.basnet import basnet


def _reference_loss(y_true, y_pred, smooth=1e-6):
    """BCE + 1 - tf.image.ssim + 1 - IoU, per image, then the batch mean; by hand."""
    p = np.clip(y_pred.astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p), axis=(1, 2, 3))
    ssim = tf.image.ssim(y_true, y_pred, max_val=1.0).numpy()
    intersection = np.sum(y_true * y_pred, axis=(1, 2, 3))
    union = np.sum(y_true, axis=(1, 2, 3)) + np.sum(y_pred, axis=(1, 2, 3)) - intersection
    iou = (intersection + smooth) / (union + smooth)
    return np.mean(bce + (1 - ssim) + (1 - iou))


def _batch(seed=0, size=48):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, size, size, 1), np.float32)
    masks[0, 10:30, 12:40] = 1.0
    masks[1, 5:45, 5:20] = 0.6  # soft saliency values, as in DUTS
    masks[1, 20:30, 25:35] = 1.0
    predictions = rng.random(masks.shape, dtype=np.float32)
    return masks, predictions


def test_matches_a_reference_computed_by_hand():
    masks, predictions = _batch()
    loss = BASNetHybridLoss()(masks, predictions)
    np.testing.assert_allclose(float(loss), _reference_loss(masks, predictions), rtol=1e-5)
    # A near-perfect prediction scores near the reference too, and near zero.
    close = np.clip(masks + 0.05 * (0.5 - masks), 0.0, 1.0).astype(np.float32)
    loss = BASNetHybridLoss()(masks, close)
    # float32 sums over 48x48 pixels against a float64 reference: 2e-5 apart on this machine.
    np.testing.assert_allclose(float(loss), _reference_loss(masks, close), rtol=5e-5)


def test_perfect_prediction_costs_almost_nothing_and_empty_masks_are_fine():
    masks, _ = _batch()
    binary = (masks > 0.7).astype(np.float32)  # image 2 has an empty mask
    assert binary[2].sum() == 0
    assert float(BASNetHybridLoss()(binary, binary)) < 1e-5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(soft_iou(binary, binary)), 1.0)


def test_per_image_values_and_config_round_trip():
    masks, predictions = _batch(seed=1)
    loss = BASNetHybridLoss(smooth=1.0, reduction=None)
    per_image = keras.ops.convert_to_numpy(loss(masks, predictions))
    assert per_image.shape == (3,)
    np.testing.assert_allclose(
        per_image.mean(), _reference_loss(masks, predictions, smooth=1.0), rtol=1e-5
    )
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, BASNetHybridLoss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(masks, predictions)), per_image)


def test_compiled_total_is_the_sum_over_the_eight_outputs():
    keras.utils.set_random_seed(0)
    model = basnet(filters=8, input_shape=(64, 64, 3))
    rng = np.random.default_rng(2)
    images = rng.random((2, 64, 64, 3), dtype=np.float32)
    masks = (rng.random((2, 64, 64, 1)) > 0.6).astype(np.float32)
    loss = BASNetHybridLoss()
    model.compile(loss=[loss] * 8, run_eagerly=True)  # eager: tracing costs more than the test
    results = model.evaluate(images, (masks,) * 8, verbose=0, return_dict=True)
    outputs = model(images, training=False)
    per_output = [float(loss(masks, output)) for output in outputs]
    for name, value in zip(model.output_names, per_output, strict=True):
        np.testing.assert_allclose(results[f"{name}_loss"], value, rtol=1e-5)
    np.testing.assert_allclose(results["loss"], sum(per_output), rtol=1e-5)


def test_ssim_needs_maps_as_large_as_its_window():
    small = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="filter_size=11"):
        BASNetHybridLoss()(small, small)
    assert float(BASNetHybridLoss(ssim_filter_size=5)(small, small)) < 1e-5
