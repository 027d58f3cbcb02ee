"""Keras' sparse categorical cross-entropy already honours per-pixel weights: no custom loss.

These tests pin that down against a numpy reference, and record what ``class_weight=`` in
``model.fit`` does with segmentation targets ``(B, H, W, 1)`` in the installed Keras.
"""

import keras
import numpy as np
import pytest

B, H, W, C = 2, 5, 7, 3
CLASS_WEIGHTS = {0: 0.5, 1: 2.0, 2: 4.0}


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (B, H, W, C)).astype("float32")
    target = rng.integers(0, C, (B, H, W, 1)).astype("int32")
    pixel_weights = rng.uniform(0, 3, (B, H, W, 1)).astype("float32")
    return logits, target, pixel_weights


def _reference(logits, target, pixel_weights):
    """Weighted per-pixel cross-entropy, summed and divided by the number of pixels."""
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    per_pixel = -np.take_along_axis(log_softmax, target, axis=-1)[..., 0]
    return (per_pixel * pixel_weights.reshape(per_pixel.shape)).sum() / per_pixel.size


def _class_weight_map(target):
    return np.vectorize(CLASS_WEIGHTS.get)(target).astype("float32")


def _pass_through_model():
    inputs = keras.Input((H, W, C))
    return keras.Model(inputs, keras.layers.Identity()(inputs))


@pytest.mark.parametrize("weight_shape", ["(B,H,W,1)", "(B,H,W)"])
def test_sparse_ce_honours_per_pixel_sample_weights(batch, weight_shape):
    logits, target, pixel_weights = batch
    weights = pixel_weights if weight_shape == "(B,H,W,1)" else pixel_weights[..., 0]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    value = float(loss(target, logits, sample_weight=weights))

    expected = _reference(logits, target, pixel_weights)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # The weights matter: unweighted is a different number.
    assert abs(float(loss(target, logits)) - expected) > 1e-3


def test_compiled_model_applies_per_pixel_weights_from_a_dataset(batch):
    tf = pytest.importorskip("tensorflow")
    logits, target, pixel_weights = batch
    model = _pass_through_model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    dataset = tf.data.Dataset.from_tensors((logits, target, pixel_weights))
    value = model.evaluate(dataset, verbose=0)

    np.testing.assert_allclose(value, _reference(logits, target, pixel_weights), rtol=1e-5)


def test_fit_class_weight_fails_for_segmentation_targets_given_as_arrays(batch):
    # The pet segmentation tutorial's point: class_weight= is no help for (B, H, W, 1) targets.
    # With arrays, Keras maps one weight per sample and trips over the per-pixel labels.
    logits, target, _ = batch
    model = _pass_through_model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(TypeError, match="only length-1 arrays can be converted"):
        model.fit(logits, target, class_weight=CLASS_WEIGHTS, epochs=1, verbose=0)


def test_fit_class_weight_with_tf_data_becomes_per_pixel_weights(batch):
    # Unlike the tutorial's TensorFlow 2 era, Keras 3's tf.data adapter squeezes the (B, H, W, 1)
    # target and gathers one weight per pixel. Per-pixel sample weights from the pipeline work
    # the same way and also with arrays and other backends, so the package uses those.
    tf = pytest.importorskip("tensorflow")
    logits, target, _ = batch
    model = _pass_through_model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    dataset = tf.data.Dataset.from_tensors((logits, target))
    history = model.fit(dataset, class_weight=CLASS_WEIGHTS, epochs=1, verbose=0)

    expected = _reference(logits, target, _class_weight_map(target))
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
