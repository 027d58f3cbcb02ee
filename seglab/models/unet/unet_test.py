import keras
import numpy as np
import pytest
from keras import layers

from seglab.models.backbones import build_backbone
from seglab.models.unet import unet
from seglab.models.unet.unet import FROM_SCRATCH_BN_MOMENTUM
from seglab.testing.models import (
    check_keras_round_trip,
    check_mixed_precision,
    check_parameter_counts,
    check_under_jax,
    random_images,
)


def _infer(model, images):
    """Inference-mode logits as numpy (an eager call: no predict graph to trace)."""
    return keras.ops.convert_to_numpy(model(images, training=False))


def _batchnorm_momenta(model):
    return {
        layer.momentum for layer in model.layers if isinstance(layer, layers.BatchNormalization)
    }


def bright_squares(count, size=64, seed=0):
    """Dark noisy images with one bright square each; the mask is 1 on the square."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.2, 0.05, (count, size, size, 3)).astype("float32")
    masks = np.zeros((count, size, size, 1), "int32")
    for index in range(count):
        side = rng.integers(size // 4, size // 2)
        row, col = rng.integers(0, size - side, 2)
        images[index, row : row + side, col : col + side] += 0.6
        masks[index, row : row + side, col : col + side] = 1
    return images * 255.0, masks  # RGB 0..255, what every seglab model takes


def _train_from_scratch(backbone_bn_momentum=None, epochs=20):
    """40 Adam steps (16 images, batch 8) of a from-scratch U-Net; returns model, history, data."""
    keras.utils.set_random_seed(1)
    images, masks = bright_squares(16, seed=1)
    model = unet(
        num_classes=2,
        input_shape=(64, 64, 3),
        encoder_weights=None,
        backbone_bn_momentum=backbone_bn_momentum,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(images, masks, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return model, history.history["loss"], images, masks


@pytest.fixture(scope="module")
def trained_from_scratch():
    return _train_from_scratch()


@pytest.fixture
def encoder_weights_file(tmp_path):
    """A local MobileNetV2 weights file, standing in for pretrained weights (no network)."""
    path = tmp_path / "mobilenetv2.weights.h5"
    build_backbone("mobilenetv2", input_shape=(64, 64, 3), weights=None).save_weights(path)
    return str(path)


def test_parameter_counts_match_the_tensorflow_tutorial():
    # The tutorial's summary at 128x128x3, 3 classes, frozen encoder.
    with pytest.warns(UserWarning, match="randomly initialised encoder frozen"):
        model = unet(
            num_classes=3, input_shape=(128, 128, 3), encoder_weights=None, encoder_trainable=False
        )
    check_parameter_counts(model, total=6_504_227, trainable=4_660_323, non_trainable=1_843_904)


@pytest.mark.parametrize("input_shape", [(64, 64, 3), (96, 160, 3)])
def test_logits_have_the_input_size(input_shape):
    model = unet(num_classes=4, input_shape=input_shape, encoder_weights=None)
    images = np.random.default_rng(0).random((2, *input_shape), dtype="float32") * 255.0
    logits = _infer(model, images)
    assert logits.shape == (2, input_shape[0], input_shape[1], 4)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_skip_connections_are_the_tutorials_layers():
    model = unet(input_shape=(128, 128, 3), encoder_weights=None)
    encoder = model.get_layer("mobilenetv2_encoder")
    assert [tuple(output.shape[1:3]) for output in encoder.outputs] == [
        (64, 64),
        (32, 32),
        (16, 16),
        (8, 8),
        (4, 4),
    ]
    upconv = model.get_layer("decoder1_upconv")
    assert upconv.filters == 512 and not upconv.use_bias
    assert upconv.kernel_initializer.stddev == pytest.approx(0.02)


def test_pretrained_encoder_is_frozen_and_keeps_keras_momentum(encoder_weights_file):
    model = unet(input_shape=(64, 64, 3), encoder_weights=encoder_weights_file)
    encoder = model.get_layer("mobilenetv2_encoder")
    assert not encoder.trainable
    assert _batchnorm_momenta(encoder) == {0.999}

    finetuned = unet(
        input_shape=(64, 64, 3), encoder_weights=encoder_weights_file, encoder_trainable=True
    )
    assert finetuned.get_layer("mobilenetv2_encoder").trainable


def test_from_scratch_encoder_is_trained_with_faster_batchnorm_statistics():
    model = unet(input_shape=(64, 64, 3), encoder_weights=None)
    encoder = model.get_layer("mobilenetv2_encoder")
    assert encoder.trainable
    assert _batchnorm_momenta(encoder) == {FROM_SCRATCH_BN_MOMENTUM}

    custom = unet(input_shape=(64, 64, 3), encoder_weights=None, backbone_bn_momentum=0.95)
    assert _batchnorm_momenta(custom.get_layer("mobilenetv2_encoder")) == {0.95}


@pytest.mark.slow  # trains a from-scratch U-Net for 40 steps: about 95 s on 2 cores
def test_from_scratch_training_lowers_the_loss(trained_from_scratch):
    _, losses, _, _ = trained_from_scratch
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.slow
def test_from_scratch_inference_predictions_are_not_constant(trained_from_scratch):
    model, _, images, masks = trained_from_scratch
    predicted = np.argmax(_infer(model, images), axis=-1)
    assert set(np.unique(predicted)) == {0, 1}
    background_only_accuracy = 1.0 - masks.mean()
    assert (predicted == masks[..., 0]).mean() > background_only_accuracy


@pytest.mark.slow
def test_from_scratch_with_keras_momentum_collapses_to_one_class():
    # The pitfall backbone_bn_momentum avoids: same training, momentum 0.999 in the encoder.
    model, losses, images, _ = _train_from_scratch(backbone_bn_momentum=0.999)
    assert losses[-1] < 0.5 * losses[0]  # training itself went fine
    predicted = np.argmax(_infer(model, images), axis=-1)
    assert len(np.unique(predicted)) == 1


def test_keras_file_round_trip_gives_identical_outputs(tmp_path, encoder_weights_file):
    model = unet(
        num_classes=3, input_shape=(64, 64, 3), encoder_weights=encoder_weights_file, dropout=0.5
    )
    restored = check_keras_round_trip(model, random_images(2, 64, 64), tmp_path / "unet.keras")
    assert not restored.get_layer("mobilenetv2_encoder").trainable


def test_free_input_size_accepts_multiples_of_32():
    model = unet(num_classes=2, input_shape=(None, None, 3), encoder_weights=None)
    for height, width in [(64, 64), (32, 96)]:
        logits = model(np.zeros((1, height, width, 3), "float32"), training=False)
        assert tuple(logits.shape) == (1, height, width, 2)


def test_logits_stay_float32_under_mixed_precision():
    check_mixed_precision(
        lambda: unet(num_classes=3, input_shape=(64, 64, 3), encoder_weights=None),
        random_images(1, 64, 64),
        float16_layer="decoder1_upconv",
    )


@pytest.mark.slow
def test_forward_pass_under_jax():
    check_under_jax("models.unet(num_classes=3, input_shape=(64, 64, 3), encoder_weights=None)")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (100, 100, 3)}, "multiples of 32"),
        ({"input_shape": (128, 128)}, r"\(height, width, channels\)"),
        ({"backbone": "resnet18"}, "Unknown backbone 'resnet18'.*mobilenetv2"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"decoder_filters": (64, 32, 16)}, "decoder_filters must be 4"),
        ({"decoder_filters": (64, 32, 16, 0)}, "decoder_filters"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        unet(encoder_weights=None, **kwargs)


def test_narrow_encoder_and_decoder_set_the_widths():
    model = unet(
        input_shape=(64, 64, 3), encoder_weights=None, alpha=0.35, decoder_filters=(32, 16, 8, 8)
    )
    assert [model.get_layer(f"decoder{i}_upconv").filters for i in (1, 2, 3, 4)] == [32, 16, 8, 8]
    # MobileNetV2's first convolution has 32 * alpha filters, rounded to a multiple of 8.
    assert model.get_layer("mobilenetv2_encoder").get_layer("Conv1").filters == 16
    full = unet(input_shape=(64, 64, 3), encoder_weights=None)
    assert model.count_params() < full.count_params() / 15
    logits = _infer(model, random_images(2, 64, 64))
    assert logits.shape == (2, 64, 64, 3)
