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


# ----------------------------------------------------------------------------------------------
# Ignored pixels: Keras' ignore_class (seglab.data's ignore_label, 255 by default)

IGNORE = 255


@pytest.fixture
def batch_with_ignored_pixels(batch):
    logits, target, pixel_weights = batch
    target = target.copy()
    target[0, :2] = IGNORE  # a band of unlabelled pixels, as along VOC/PaddleSeg borders
    target[1, 3, 4] = IGNORE
    return logits, target, pixel_weights


def _reference_ignoring(logits, target, pixel_weights=None):
    """Weighted cross-entropy summed over the pixels not labelled IGNORE, divided by their count."""
    valid = target[..., 0] != IGNORE
    safe_target = np.where(target == IGNORE, 0, target)
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    per_pixel = -np.take_along_axis(log_softmax, safe_target, axis=-1)[..., 0]
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights[..., 0]
    return per_pixel[valid].sum() / valid.sum()


@pytest.mark.parametrize("weighted", [False, True])
def test_ignore_class_gives_the_mean_over_the_other_pixels(batch_with_ignored_pixels, weighted):
    logits, target, pixel_weights = batch_with_ignored_pixels
    weights = pixel_weights if weighted else None
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)

    value = float(loss(target, logits, sample_weight=weights))

    expected = _reference_ignoring(logits, target, weights)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # Dividing by all pixels, ignored ones included, would be a different number.
    valid_fraction = (target != IGNORE).mean()
    assert abs(value * valid_fraction - value) > 1e-2


def test_ignored_pixels_get_no_gradient_and_their_logits_do_not_matter(batch_with_ignored_pixels):
    tf = pytest.importorskip("tensorflow")
    logits, target, pixel_weights = batch_with_ignored_pixels
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(target, variable, sample_weight=pixel_weights)
    gradient = tape.gradient(value, variable).numpy()
    ignored = target[..., 0] == IGNORE
    assert np.all(gradient[ignored] == 0) and np.all(np.abs(gradient[~ignored]).sum(-1) > 0)
    changed = logits.copy()
    changed[ignored] = 50.0 * np.random.default_rng(3).normal(size=changed[ignored].shape)
    assert float(loss(target, changed, sample_weight=pixel_weights)) == pytest.approx(
        float(value), rel=1e-6
    )


def test_compiled_model_ignores_pixels_with_weights_from_a_dataset(batch_with_ignored_pixels):
    # The pipeline gives ignored pixels weight 0 as well; the mean is over the other pixels.
    tf = pytest.importorskip("tensorflow")
    logits, target, pixel_weights = batch_with_ignored_pixels
    pixel_weights = np.where(target == IGNORE, 0.0, pixel_weights).astype("float32")
    model = _pass_through_model()
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
    )
    dataset = tf.data.Dataset.from_tensors((logits, target, pixel_weights))
    value = model.evaluate(dataset, verbose=0)
    np.testing.assert_allclose(value, _reference_ignoring(logits, target, pixel_weights), rtol=1e-5)


@pytest.mark.slow  # a fresh interpreter under JAX: ~30 s on 2 cores
def test_ignored_pixels_under_jax_in_a_compiled_model():
    # Keras passes the ignore mask as a tensor attribute, which JAX arrays cannot carry: it
    # keeps them aside, and the jitted evaluation must still divide by the valid pixels only.
    import os
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("jax")
    code = textwrap.dedent(
        """
        import keras, numpy as np
        from seglab.losses import u2net_loss
        from seglab.metrics.training import segmentation_metrics
        assert keras.backend.backend() == "jax"
        rng = np.random.default_rng(0)
        logits = rng.normal(0, 2, (2, 5, 7, 3)).astype("float32")
        target = rng.integers(0, 3, (2, 5, 7, 1)).astype("int32")
        target[:, :2] = 255
        weights = rng.uniform(0, 3, target.shape).astype("float32")
        inputs = keras.Input((5, 7, 3))
        model = keras.Model(inputs, keras.layers.Identity()(inputs))
        model.compile(
            loss=u2net_loss("multiclass")["loss"][0],
            metrics=segmentation_metrics(3),
            jit_compile=True,
        )
        results = model.evaluate(logits, target, sample_weight=weights, verbose=0, return_dict=True)
        print(results["loss"], results["pixel_accuracy"])
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loss, accuracy = (float(v) for v in done.stdout.split())
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2, 5, 7, 3)).astype("float32")
    target = rng.integers(0, 3, (2, 5, 7, 1)).astype("int32")
    target[:, :2] = IGNORE
    weights = rng.uniform(0, 3, target.shape).astype("float32")
    np.testing.assert_allclose(loss, _reference_ignoring(logits, target, weights), rtol=1e-5)
    valid = target[..., 0] != IGNORE
    assert accuracy == pytest.approx((logits.argmax(-1) == target[..., 0])[valid].mean(), abs=1e-6)
