import keras
import numpy as np
import pytest
from keras import ops

from seglab.losses.u2net import u2net_loss
from seglab.models.u2net.u2net import OUTPUT_NAMES, u2net, u2netp
from seglab.testing.models import (
    check_keras_round_trip,
    check_mixed_precision,
    check_under_jax,
    count_parameters,
    random_images,
)

# Forward passes are eager calls and training runs eagerly: tracing a U²-Net (about 460
# variables) into a tf.function takes 10 s for predict() and minutes for a train step on a
# 2-core CPU.


def _trainable_parameters(model):
    return count_parameters(model.trainable_weights)


def _forward(model, images):
    return [ops.convert_to_numpy(o) for o in model(images, training=False)]


def test_u2net_parameters_and_shapes_at_two_sizes():
    model = u2net(input_shape=(None, None, 3))
    # The official PyTorch U2NET with out_ch=1 (model/u2net.py of xuebinqin/U-2-Net).
    assert _trainable_parameters(model) == 44_009_869
    for height, width in [(64, 64), (100, 140)]:
        outputs = _forward(model, np.zeros((1, height, width, 3), "float32"))
        assert [o.shape for o in outputs] == [(1, height, width, 1)] * 7


def test_u2netp_trainable_parameters_match_official_pytorch_model():
    assert _trainable_parameters(u2netp(input_shape=(None, None, 3))) == 1_131_181


@pytest.mark.parametrize("head,num_classes", [("salient", 1), ("multiclass", 4)])
def test_u2netp_shapes_and_dtypes_at_two_sizes(head, num_classes):
    model = u2netp(num_classes, input_shape=(None, None, 3), head=head)
    assert model.output_names == list(OUTPUT_NAMES)
    for height, width in [(96, 64), (100, 140)]:
        outputs = _forward(model, np.random.rand(2, height, width, 3).astype("float32"))
        assert len(outputs) == 7
        for output in outputs:
            assert output.shape == (2, height, width, num_classes)
            assert output.dtype == np.float32


def test_u2netp_free_size_predict_at_two_sizes():
    # The second predict() retraces with unknown height and width.
    model = u2netp(input_shape=(None, None, 3))
    for height, width in [(64, 64), (100, 140)]:
        outputs = model.predict(np.zeros((1, height, width, 3), "float32"), verbose=0)
        assert [o.shape for o in outputs] == [(1, height, width, 1)] * 7


def test_u2netp_default_size_forward():
    outputs = _forward(u2netp(), np.random.rand(1, 320, 320, 3).astype("float32"))
    assert [o.shape for o in outputs] == [(1, 320, 320, 1)] * 7


def test_salient_head_fuses_side_logits_with_sigmoid():
    model = u2netp(input_shape=(40, 56, 3), head="salient")
    assert all(model.get_layer(f"side{i}_conv").kernel_size == (3, 3) for i in range(1, 7))
    fused, *sides = _forward(model, np.random.rand(1, 40, 56, 3).astype("float32"))
    for probabilities in [fused, *sides]:
        assert probabilities.min() > 0 and probabilities.max() < 1

    # fused = sigmoid(fuse_conv(concat(side logits))), the sides being sigmoid(side logits).
    side_logits = np.concatenate([np.log(p / (1 - p)) for p in sides], axis=-1)
    kernel, bias = (ops.convert_to_numpy(w) for w in model.get_layer("fuse_conv").weights)
    expected = 1 / (1 + np.exp(-(side_logits @ kernel[0, 0] + bias)))
    np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-5)


def test_multiclass_head_returns_logits_fused_by_1x1_conv():
    model = u2netp(3, input_shape=(40, 56, 3), head="multiclass")
    assert all(model.get_layer(f"side{i}_conv").kernel_size == (1, 1) for i in range(1, 7))
    fused, *sides = _forward(model, np.random.rand(1, 40, 56, 3).astype("float32"))
    assert min(s.min() for s in sides) < 0  # no activation

    kernel, bias = (ops.convert_to_numpy(w) for w in model.get_layer("fuse_conv").weights)
    expected = np.concatenate(sides, axis=-1) @ kernel[0, 0] + bias
    np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-5)


def test_outputs_are_float32_under_mixed_precision():
    check_mixed_precision(
        lambda: u2netp(2, input_shape=(32, 48, 3), head="multiclass"),
        random_images(1, 32, 48),
        float16_layer="stage1",
    )


def test_keras_file_round_trip(tmp_path):
    model = u2netp(input_shape=(None, None, 3))
    restored = check_keras_round_trip(model, random_images(2, 48, 72), tmp_path / "u2netp.keras")
    assert restored.output_names == list(OUTPUT_NAMES)


@pytest.mark.slow
def test_forward_pass_and_training_steps_under_jax():
    check_under_jax("models.u2netp(num_classes=1, input_shape=(64, 64, 3))", train=True)
    check_under_jax("models.u2netp(num_classes=3, input_shape=(64, 64, 3), head='multiclass')")


def _fixed_batch(head, num_classes):
    rng = np.random.default_rng(0)
    unit = rng.random((2, 48, 48, 3), dtype=np.float32)
    if head == "salient":
        targets = (unit[..., :1] > 0.5).astype("float32")
    else:
        targets = (unit[..., :1] * num_classes).astype("int32")
    return unit * 255.0, targets  # the model takes RGB 0..255


def _numpy_loss(head, target, prediction):
    if head == "salient":
        p = np.clip(prediction, 1e-7, 1 - 1e-7)
        return np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p)))
    shifted = prediction - prediction.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return np.mean(-np.take_along_axis(log_softmax, target, axis=-1))


@pytest.mark.slow
@pytest.mark.parametrize("head,num_classes", [("salient", 1), ("multiclass", 3)])
def test_compiled_loss_is_weighted_sum_and_one_step_lowers_it(head, num_classes):
    keras.utils.set_random_seed(0)
    model = u2netp(num_classes, input_shape=(48, 48, 3), head=head)
    weights = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True, **u2net_loss(head, weights)
    )
    images, targets = _fixed_batch(head, num_classes)

    total = model.evaluate(images, [targets] * 7, verbose=0, return_dict=True)["loss"]
    predictions = _forward(model, images)
    expected = sum(
        w * _numpy_loss(head, targets, p) for w, p in zip(weights, predictions, strict=True)
    )
    np.testing.assert_allclose(total, expected, rtol=1e-4)

    # train_on_batch reports the loss before its update, so the second call sees the first step.
    before = model.train_on_batch(images, [targets] * 7, return_dict=True)["loss"]
    after = model.train_on_batch(images, [targets] * 7, return_dict=True)["loss"]
    assert after < before


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"head": "binary"}, "head must be one of"),
        ({"head": "multiclass"}, "needs num_classes >= 2"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"input_shape": (320, 320)}, "input_shape must be"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        u2netp(**kwargs)
