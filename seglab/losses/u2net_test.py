import keras
import numpy as np
import pytest

from seglab.losses.u2net import U2NET_NUM_OUTPUTS, deep_supervision_loss, u2net_loss

B, H, W = 2, 6, 5


def _pass_through_model(num_outputs, channels):
    """A model whose outputs are its inputs, so the compiled loss sees fixed predictions."""
    inputs = [keras.Input((H, W, channels)) for _ in range(num_outputs)]
    outputs = [keras.layers.Identity(name=f"out{i}")(x) for i, x in enumerate(inputs)]
    return keras.Model(inputs, outputs)


def _numpy_bce(target, probability):
    p = np.clip(probability, 1e-7, 1 - 1e-7)  # Keras' epsilon
    return np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p)))


def _numpy_sparse_ce(target, logits, pixel_weights=None):
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    per_pixel = -np.take_along_axis(log_softmax, target, axis=-1)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights
    return per_pixel.mean()  # sum over all pixels / number of pixels ("sum_over_batch_size")


def test_deep_supervision_loss_gives_one_loss_and_weight_per_output():
    base = keras.losses.BinaryCrossentropy()
    arguments = deep_supervision_loss(base, 3)
    assert arguments == {"loss": [base, base, base], "loss_weights": [1.0, 1.0, 1.0]}
    assert deep_supervision_loss(base, 2, weights=[1, 0.5])["loss_weights"] == [1.0, 0.5]


@pytest.mark.parametrize(
    "num_outputs,weights,message",
    [
        (7, [1.0] * 6, "got 6 loss weights for 7 outputs"),
        (2, [1.0, -0.5], "non-negative"),
        (2, [1.0, "a"], "non-negative"),
        (0, None, "num_outputs must be a positive integer"),
    ],
)
def test_deep_supervision_loss_rejects_bad_arguments(num_outputs, weights, message):
    with pytest.raises(ValueError, match=message):
        deep_supervision_loss("mse", num_outputs, weights)


def test_u2net_loss_heads():
    salient = u2net_loss("salient")
    assert len(salient["loss"]) == U2NET_NUM_OUTPUTS == 7
    assert isinstance(salient["loss"][0], keras.losses.BinaryCrossentropy)
    assert salient["loss_weights"] == [1.0] * 7

    multiclass = u2net_loss("multiclass", weights=[1, 2, 3, 4, 5, 6, 7])
    assert isinstance(multiclass["loss"][0], keras.losses.SparseCategoricalCrossentropy)
    assert multiclass["loss"][0].get_config()["from_logits"] is True
    assert multiclass["loss_weights"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]

    with pytest.raises(ValueError, match="head must be 'salient' or 'multiclass'"):
        u2net_loss("binary")


def test_salient_total_loss_is_sum_of_bce_over_seven_outputs():
    rng = np.random.default_rng(0)
    probabilities = [rng.uniform(0.01, 0.99, (B, H, W, 1)).astype("float32") for _ in range(7)]
    probabilities[3][0, 0, 0, 0] = 0.0  # clipped by Keras' epsilon, as in the reference
    target = (rng.random((B, H, W, 1)) > 0.5).astype("float32")

    model = _pass_through_model(7, 1)
    model.compile(**u2net_loss("salient"))
    results = model.evaluate(probabilities, [target] * 7, verbose=0, return_dict=True)

    per_output = [_numpy_bce(target, p) for p in probabilities]
    np.testing.assert_allclose(results["loss"], sum(per_output), rtol=1e-5)
    np.testing.assert_allclose(results["out3_loss"], per_output[3], rtol=1e-5)


def test_multiclass_total_loss_is_weighted_sum_with_per_pixel_weights():
    rng = np.random.default_rng(1)
    logits = [rng.normal(0, 2, (B, H, W, 3)).astype("float32") for _ in range(7)]
    target = rng.integers(0, 3, (B, H, W, 1)).astype("int32")
    pixel_weights = rng.uniform(0, 3, (B, H, W, 1)).astype("float32")
    weights = [1.0, 0.5, 0.5, 0.25, 0.25, 0.0, 2.0]

    model = _pass_through_model(7, 3)
    model.compile(**u2net_loss("multiclass", weights))
    # With arrays Keras wants one (B, H, W, 1) weight array per output.
    total = model.evaluate(
        logits, [target] * 7, sample_weight=[pixel_weights] * 7, verbose=0, return_dict=True
    )["loss"]

    expected = sum(
        w * _numpy_sparse_ce(target, z, pixel_weights) for w, z in zip(weights, logits, strict=True)
    )
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_one_pixel_weight_tensor_serves_all_outputs_in_a_tf_data_pipeline():
    # make_dataset(..., class_weights=..., num_outputs=7) yields (image, (mask,) * 7, weights):
    # one weight tensor for the seven outputs. Keras applies it to each of them.
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    logits = tuple(rng.normal(0, 2, (B, H, W, 3)).astype("float32") for _ in range(7))
    target = rng.integers(0, 3, (B, H, W, 1)).astype("int32")
    pixel_weights = rng.uniform(0, 3, (B, H, W, 1)).astype("float32")

    model = _pass_through_model(7, 3)
    model.compile(**u2net_loss("multiclass"))
    dataset = tf.data.Dataset.from_tensors((logits, (target,) * 7, pixel_weights))
    total = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]

    expected = sum(_numpy_sparse_ce(target, z, pixel_weights) for z in logits)
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def _numpy_sparse_ce_ignoring(target, logits, pixel_weights, ignore=255):
    """Weighted per-pixel cross-entropy over the pixels not labelled ``ignore``, / their count."""
    valid = target != ignore
    per_pixel = -np.take_along_axis(
        logits - np.log(np.exp(logits).sum(-1, keepdims=True)), np.where(valid, target, 0), -1
    )
    return (per_pixel * pixel_weights)[valid].sum() / valid.sum()


def test_multiclass_deep_supervision_leaves_ignored_pixels_out_of_every_output():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    logits = tuple(rng.normal(0, 2, (B, H, W, 3)).astype("float32") for _ in range(7))
    target = rng.integers(0, 3, (B, H, W, 1)).astype("int32")
    target[:, :2] = 255  # ignored rows in both images
    pixel_weights = np.where(target == 255, 0.0, rng.uniform(0, 3, target.shape)).astype("float32")
    weights = [1.0, 0.5, 0.5, 0.25, 0.25, 0.0, 2.0]

    loss_arguments = u2net_loss("multiclass", weights)
    assert loss_arguments["loss"][0].get_config()["ignore_class"] == 255
    model = _pass_through_model(7, 3)
    model.compile(**loss_arguments)
    dataset = tf.data.Dataset.from_tensors((logits, (target,) * 7, pixel_weights))
    results = model.evaluate(dataset, verbose=0, return_dict=True)

    per_output = [_numpy_sparse_ce_ignoring(target, z, pixel_weights) for z in logits]
    np.testing.assert_allclose(results["out3_loss"], per_output[3], rtol=1e-5)
    np.testing.assert_allclose(
        results["loss"], sum(w * v for w, v in zip(weights, per_output, strict=True)), rtol=1e-5
    )
    # Averaged over all pixels instead, each output's loss would be a third smaller.
    assert per_output[3] * (target != 255).mean() < 0.8 * results["out3_loss"]


def test_ignore_label_can_be_changed_or_turned_off():
    assert u2net_loss("multiclass", ignore_label=None)["loss"][0].ignore_class is None
    assert u2net_loss("multiclass", ignore_label=7)["loss"][0].ignore_class == 7
