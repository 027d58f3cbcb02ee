import keras
import numpy as np
import pytest

from seglab.losses.basnet import BASNetHybridLoss
from seglab.models.backbones import WeightsDownloadError
from seglab.models.basnet.basnet import (
    OUTPUT_NAMES,
    basnet,
    keras_hub_resnet_stages,
    own_resnet_stage,
)
from seglab.models.heads import output_info
from seglab.testing.models import (
    check_keras_round_trip,
    check_mixed_precision,
    check_parameter_counts,
    check_under_jax,
    random_images,
)

SMOKE = {"filters": 16, "input_shape": (64, 64, 3)}


def _predict(model, images):
    # An eager call: tracing predict()'s graph of a model this deep costs more than the test.
    outputs = model(images, training=False)
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in outputs]
    return keras.ops.convert_to_numpy(outputs)


@pytest.fixture(scope="module")
def smoke_model():
    keras.utils.set_random_seed(0)
    return basnet(**SMOKE)


def test_parameter_count_matches_keras_io_example():
    # keras.io "Highly accurate boundaries segmentation using BASNet", model.summary():
    # total 108,886,792, trainable 108,834,952, non-trainable 51,840.
    model = basnet(num_classes=1, input_shape=(288, 288, 3))
    check_parameter_counts(model, total=108_886_792, trainable=108_834_952, non_trainable=51_840)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 288, 288, 1)] * 8
    assert model.output_names == list(OUTPUT_NAMES)


@pytest.mark.parametrize("size", [64, 96])
def test_outputs_are_eight_sigmoids_of_their_logits_at_input_size(size):
    model = basnet(num_classes=1, input_shape=(size, size, 3), filters=16)
    info = output_info(model)
    assert (info.kind, info.activation, info.num_outputs) == ("probabilities", "sigmoid", 8)
    # Each output is the sigmoid of the logits entering its SegmentationOutput.
    heads = [tensor._keras_history.operation for tensor in model.outputs]
    probe = keras.Model(model.input, [head.input for head in heads] + list(model.outputs))
    values = _predict(probe, random_images(2, size, size))
    logits, outputs = values[:8], values[8:]
    for logit, output in zip(logits, outputs, strict=True):
        assert output.shape == (2, size, size, 1)
        assert output.dtype == np.float32
        np.testing.assert_allclose(output, 1.0 / (1.0 + np.exp(-logit)), atol=1e-6)


def test_several_classes_give_several_channels():
    model = basnet(num_classes=3, input_shape=(64, 96, 3), filters=8)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 64, 96, 3)] * 8


def test_refined_map_is_coarse_map_plus_residual(smoke_model):
    images = np.random.default_rng(1).random((1, 64, 64, 3), dtype=np.float32) * 255.0
    coarse = smoke_model.get_layer("side_1").input
    residual = smoke_model.get_layer("refine_output_conv").output
    probe = keras.Model(smoke_model.input, [coarse, residual, smoke_model.outputs[0]])
    coarse_logits, residual_logits, refined = _predict(probe, images)
    expected = 1.0 / (1.0 + np.exp(-(coarse_logits + residual_logits)))
    np.testing.assert_allclose(refined, expected, atol=1e-6)


def test_outputs_stay_float32_under_mixed_precision():
    check_mixed_precision(
        lambda: basnet(**SMOKE), random_images(1, 64, 64), float16_layer="decoder1_1_conv"
    )


def test_keras_file_round_trip_gives_identical_outputs(smoke_model, tmp_path):
    check_keras_round_trip(smoke_model, random_images(2, 64, 64, seed=2), tmp_path / "b.keras")


@pytest.mark.slow
def test_forward_pass_under_jax():
    check_under_jax("models.basnet(num_classes=1, input_shape=(64, 64, 3), filters=8)")


def test_weights_file_initialises_the_model(smoke_model, tmp_path):
    path = tmp_path / "basnet.weights.h5"
    smoke_model.save_weights(path)
    model = basnet(**SMOKE, weights=str(path))
    images = np.random.default_rng(3).random((1, 64, 64, 3), dtype=np.float32) * 255.0
    np.testing.assert_array_equal(_predict(smoke_model, images)[0], _predict(model, images)[0])


def test_keras_hub_stages_skip_the_stem_and_round_trip(tmp_path):
    stages = keras_hub_resnet_stages("resnet34")
    # ResNet-34 stages 1-2 as in the keras.io summary: 222,720 and 1,118,720 parameters.
    assert [stage.count_params() for stage in stages[:2]] == [222_720, 1_118_720]
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(64, 3, padding="same")(inputs)
    x = stages[0](x)  # no stem: the first stage keeps the full resolution
    assert tuple(x.shape) == (None, 32, 32, 64)
    x = stages[1](keras.layers.ReLU()(x))
    assert tuple(x.shape) == (None, 16, 16, 128)
    model = keras.Model(inputs, x)
    model.save(tmp_path / "stages.keras")
    restored = keras.models.load_model(tmp_path / "stages.keras")
    images = np.random.default_rng(4).random((1, 32, 32, 3), dtype=np.float32) * 255.0
    np.testing.assert_array_equal(_predict(model, images), _predict(restored, images))


@pytest.mark.parametrize("index", [0, 1])
def test_own_resnet_stage_computes_the_keras_hub_stage(index):
    # Narrow models build their ResNet stages here; at 64 filters they must be keras-hub's.
    hub_stage = keras_hub_resnet_stages("resnet34")[index]
    rng = np.random.default_rng(index)
    for weight in hub_stage.weights:
        value = rng.normal(0.0, 0.1, weight.shape)
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        weight.assign(value.astype("float32"))
    own_stage = own_resnet_stage(index, 64 * 2**index, (3, 4, 6, 3)[index])
    for layer in own_stage.layers:
        if layer.weights:
            layer.set_weights(hub_stage.get_layer(layer.name).get_weights())
    assert own_stage.count_params() == hub_stage.count_params()
    features = rng.random((1, 16, 16, 64 * 2 ** max(index - 1, 0))).astype("float32")
    np.testing.assert_allclose(
        _predict(own_stage, features), _predict(hub_stage, features), atol=1e-4
    )


def test_training_steps_lower_the_hybrid_loss_on_all_outputs():
    keras.utils.set_random_seed(5)
    model = basnet(**SMOKE)
    rng = np.random.default_rng(5)
    images = rng.random((2, 64, 64, 3), dtype=np.float32) * 255.0
    masks = np.zeros((2, 64, 64, 1), np.float32)
    masks[0, 16:48, 20:44] = 1.0
    masks[1, 8:30, 8:56] = 1.0
    images[masks[..., 0] > 0] *= 0.3  # make the object visible
    # Eager steps: tracing the training graph alone takes longer than a few eager steps.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=[BASNetHybridLoss()] * 8, run_eagerly=True
    )
    targets = (masks,) * 8
    # train_on_batch reports the loss of the weights it starts from, per output after the total.
    losses = [model.train_on_batch(images, targets) for _ in range(6)]
    first, last = np.array(losses[0]), np.array(losses[-1])
    assert len(first) == 9 and np.all(np.isfinite(last))
    assert last[0] < 0.9 * first[0]
    assert last[1] < first[1]  # the refined map improves too


def test_offline_preset_request_gives_a_clear_error(monkeypatch):
    import keras_hub
    import requests

    def offline(*args, **kwargs):  # what kagglehub raises without a network connection
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.ResNetBackbone, "from_preset", offline)
    with pytest.raises(WeightsDownloadError, match="resnet_18_imagenet.*weights=None"):
        basnet(backbone="resnet18", encoder_weights="imagenet", input_shape=(64, 64, 3))


def test_bad_arguments_are_refused_with_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="no ImageNet weights for a resnet34"):
        basnet(encoder_weights="imagenet")
    missing = tmp_path / "missing.weights.h5"
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        basnet(weights=str(missing))
    with pytest.raises(ValueError, match="multiples of 32"):
        basnet(input_shape=(100, 100, 3))
    with pytest.raises(ValueError, match="Unknown BASNet backbone 'resnet50'"):
        basnet(backbone="resnet50")
    with pytest.raises(ValueError, match="filters=16"):
        basnet(backbone="resnet18", encoder_weights="imagenet", filters=16)
    with pytest.raises(ValueError, match="unknown weights 'imagenet'"):
        basnet(weights="imagenet")


def test_a_backbone_preset_is_copied_into_the_same_stages_smoke_models_use(tmp_path):
    # One builder for every width: the full model's stages are own_resnet_stage's too, and a
    # keras-hub ResNet preset (a local folder here, no network) fills them by layer name.
    import keras_hub

    keras.utils.set_random_seed(7)
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
    )
    rng = np.random.default_rng(7)
    for weight in resnet.weights:  # moving statistics too, so that every weight is checked
        weight.assign(np.abs(rng.normal(0.5, 0.1, weight.shape)).astype("float32"))
    resnet.save_to_preset(tmp_path / "resnet18")
    model = basnet(backbone="resnet18", encoder_weights=str(tmp_path / "resnet18"))
    stage = model.get_layer("resnet18_stage2")
    assert {type(layer).__name__ for layer in stage.layers} <= {
        "InputLayer",
        "Conv2D",
        "BatchNormalization",
        "ReLU",
        "Add",
        "ZeroPadding2D",
    }
    for layer in (layer for layer in stage.layers if layer.weights):
        for got, want in zip(
            layer.get_weights(), resnet.get_layer(layer.name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want)
