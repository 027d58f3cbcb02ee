import keras
import numpy as np
import pytest

from seglab.models.deeplabv3plus import deeplabv3plus
from seglab.testing.models import (
    check_keras_round_trip,
    check_mixed_precision,
    check_under_jax,
    random_images,
)


def _infer(model, images):
    """Inference-mode logits as numpy (an eager call: no predict graph to trace)."""
    return keras.ops.convert_to_numpy(model(images, training=False))


def _images(count, height, width, seed=0):
    return random_images(count, height, width, seed)


def test_parameter_count_and_output_at_512_match_the_keras_example():
    model = deeplabv3plus(num_classes=20, input_shape=(512, 512, 3), encoder_weights=None)
    assert model.count_params() == 11_857_236

    logits = _infer(model, _images(1, 512, 512))
    assert logits.shape == (1, 512, 512, 20)
    assert logits.dtype == np.float32


def test_logits_have_the_input_size_at_another_size():
    model = deeplabv3plus(num_classes=5, input_shape=(96, 128, 3), encoder_weights=None)
    logits = _infer(model, _images(2, 96, 128))
    assert logits.shape == (2, 96, 128, 5)
    assert np.isfinite(logits).all()


def test_pyramid_pooling_and_decoder_follow_the_example():
    model = deeplabv3plus(num_classes=20, input_shape=(128, 128, 3), encoder_weights=None)
    encoder = model.get_layer("resnet50_encoder")
    # Stride 16 for the pyramid pooling, stride 4 for the decoder's low-level features.
    assert [tuple(output.shape[1:]) for output in encoder.outputs] == [(8, 8, 256), (32, 32, 64)]

    assert model.get_layer("aspp_pool_conv").use_bias
    for rate in (6, 12, 18):
        conv = model.get_layer(f"aspp_rate{rate}_conv")
        assert conv.dilation_rate == (rate, rate) and conv.kernel_size == (3, 3)
        assert not conv.use_bias and isinstance(
            conv.kernel_initializer, keras.initializers.HeNormal
        )
    assert model.get_layer("aspp_concat").output.shape[-1] == 5 * 256
    assert model.get_layer("decoder_low_level_conv").filters == 48
    assert model.get_layer("decoder_concat").output.shape[1:] == (32, 32, 256 + 48)


def test_free_input_size_accepts_multiples_of_16():
    model = deeplabv3plus(num_classes=3, input_shape=(None, None, 3), encoder_weights=None)
    for height, width in [(64, 64), (48, 80)]:
        logits = model(np.zeros((1, height, width, 3), "float32"), training=False)
        assert tuple(logits.shape) == (1, height, width, 3)


def test_a_few_optimiser_steps_lower_the_loss():
    keras.utils.set_random_seed(0)
    images = _images(2, 64, 64)
    labels = (images[..., :1] > 0.5).astype("int32")  # class 1 where the red channel is bright
    model = deeplabv3plus(num_classes=2, input_shape=(64, 64, 3), encoder_weights=None)
    # Eager steps: cheaper here than tracing ResNet50's training graph for three steps.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    losses = [float(model.train_on_batch(images, labels)) for _ in range(4)]
    assert losses[-1] < losses[0]


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = deeplabv3plus(num_classes=4, input_shape=(64, 64, 3), encoder_weights=None)
    check_keras_round_trip(model, _images(2, 64, 64), tmp_path / "deeplabv3plus.keras")


def test_logits_stay_float32_under_mixed_precision():
    check_mixed_precision(
        lambda: deeplabv3plus(num_classes=3, input_shape=(64, 64, 3), encoder_weights=None),
        _images(1, 64, 64),
        float16_layer="aspp_fuse_conv",
    )


@pytest.mark.slow
def test_forward_pass_under_jax():
    check_under_jax(
        "models.deeplabv3plus(num_classes=5, input_shape=(64, 64, 3), encoder_weights=None)"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (100, 100, 3)}, "multiples of 16"),
        ({"input_shape": (72, 64, 3)}, "multiples of 16"),
        ({"backbone": "mobilenetv2"}, "Unknown backbone 'mobilenetv2'.*resnet50"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deeplabv3plus(encoder_weights=None, **kwargs)
