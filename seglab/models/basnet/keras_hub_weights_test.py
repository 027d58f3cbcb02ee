"""keras-hub's BASNet, built from its configuration with random weights (no download), against
seglab's BASNet after the conversion."""

import json

import keras
import numpy as np
import pytest

from seglab.models.backbones import WeightsDownloadError
from seglab.models.basnet import basnet
from seglab.models.basnet.keras_hub_weights import (
    _walk_keras_hub,
    basnet_differences,
    compare_with_keras_hub,
    convert_keras_hub_basnet,
    is_keras_hub_preset,
    load_basnet_preset,
)

SIZE = 64  # the smallest multiple of 32 where every decoder stage upsamples a 2x2+ map
# keras-hub's basnet_duts preset: ResNet-34 encoder, one class, 64 filters.
RESNET34 = {
    "input_conv_filters": [64],
    "input_conv_kernel_sizes": [7],
    "stackwise_num_filters": [64, 128, 256, 512],
    "stackwise_num_blocks": [3, 4, 6, 3],
    "stackwise_num_strides": [1, 2, 2, 2],
    "block_type": "basic_block",
}
SMALL = {"input_shape": (SIZE, SIZE, 3), "filters": 16}
STAGE_RELU_DIFFERENCES = [
    "input of ResNet stage 2: seglab applies a ReLU to the residual sum of stage 1, "
    "keras-hub does not",
    "input of ResNet stage 3: seglab applies a ReLU to the residual sum of stage 2, "
    "keras-hub does not",
    "input of ResNet stage 4: seglab applies a ReLU to the residual sum of stage 3, "
    "keras-hub does not",
    "input of the max pool of stage 5: seglab applies a ReLU to the residual sum of stage 4, "
    "keras-hub does not",
]


@pytest.fixture(scope="module")
def hub_model():
    """keras-hub's BASNet of the basnet_duts configuration, with random weights."""
    import keras_hub

    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(**RESNET34)
    model = keras_hub.models.BASNetBackbone(
        image_encoder=encoder, num_classes=1, image_shape=(SIZE, SIZE, 3)
    )
    # Kernels keep their random initialisation; the zeros and ones of biases and BN
    # statistics get values that show a swapped or missed weight.
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if len(weight.shape) == 1:
            value = rng.normal(0.0, 0.1, weight.shape)
            if "gamma" in weight.path or "variance" in weight.path:
                value = rng.uniform(0.5, 1.5, weight.shape)
            weight.assign(value.astype("float32"))
    return model


@pytest.fixture(scope="module")
def small_model():
    """A 16-filter seglab BASNet in its default (keras.io) layout; tests must not change it."""
    return basnet(**SMALL)


@pytest.fixture
def hub_from_preset(monkeypatch, hub_model):
    """keras-hub's from_preset, offline: returns the random-weight model, records the preset."""
    import keras_hub

    requested = []

    def from_preset(preset, **kwargs):
        requested.append(preset)
        return hub_model

    monkeypatch.setattr(keras_hub.models.BASNetBackbone, "from_preset", from_preset)
    return requested


def _numpy(outputs):
    if isinstance(outputs, dict):  # keras-hub's BASNetBackbone: refined, then sides 1..7
        outputs = [outputs["refine_out"], *[outputs[f"predict_out_{k}"] for k in range(1, 8)]]
    return [keras.ops.convert_to_numpy(output) for output in outputs]


@pytest.mark.slow  # ~70 s on a busy 2-core machine: two 108.9M-parameter models
def test_basnet_duts_weights_give_keras_hub_outputs(hub_model, hub_from_preset):
    model = basnet(input_shape=(SIZE, SIZE, 3), weights="basnet_duts")
    assert hub_from_preset == ["basnet_duts"]
    # Parameters do not depend on the input size: the keras.io model's 108,886,792 at 288.
    assert model.count_params() == 108_886_792
    stem = sum(
        hub_model.image_encoder.get_layer(name).count_params()
        for name in ("conv1_conv", "conv1_bn")
    )
    assert stem == 9_664  # keras-hub counts its ResNet's stem, which BASNet never runs
    assert hub_model.count_params() - stem == model.count_params()
    # keras-hub's layout (no ReLU between ResNet stages) was chosen for its preset.
    assert basnet_differences(hub_model, model) == []
    # BN epsilons differ (keras-hub 1e-3, seglab 1e-5): the moving variance absorbs it.
    hub_bn = _walk_keras_hub(hub_model).layers["bridge_1_bn"]  # found by its place
    seglab_bn = model.get_layer("bridge_1_bn")
    assert (hub_bn.epsilon, seglab_bn.epsilon) == (1e-3, 1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(seglab_bn.moving_variance),
        keras.ops.convert_to_numpy(hub_bn.moving_variance) + (1e-3 - 1e-5),
        rtol=1e-6,
    )

    images = np.random.default_rng(1).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    # keras-hub's network takes the images the keras.io example trained on: pixels / 255.
    hub_outputs = _numpy(hub_model(images / 255.0, training=False))
    outputs = _numpy(model(images, training=False))
    assert len(outputs) == len(hub_outputs) == 8
    differences = [float(np.max(np.abs(a - b))) for a, b in zip(outputs, hub_outputs, strict=True)]
    where = "" if max(differences) < 1e-4 else compare_with_keras_hub(hub_model, model, images)
    assert max(differences) < 1e-4, f"outputs differ by {differences}; per point: {where}"
    assert np.std(outputs[0]) > 1e-3  # not saturated: equal values mean something


def test_keras_io_layout_differs_exactly_at_the_relus_between_resnet_stages(hub_model, small_model):
    # seglab's default (keras.io's and the original BASNet's) vs keras-hub's BASNetBackbone;
    # the slow test above checks that keras-hub's layout (stage_relu=False) leaves none.
    assert basnet_differences(hub_model, small_model) == STAGE_RELU_DIFFERENCES


@pytest.mark.slow
def test_keras_io_layout_parts_from_keras_hub_at_resnet_stage_2(hub_model):
    model = basnet(input_shape=(SIZE, SIZE, 3))  # stage_relu=True
    assert convert_keras_hub_basnet(hub_model, model) == STAGE_RELU_DIFFERENCES
    images = np.random.default_rng(2).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    points = ["input conv", "ResNet stage 1", "ResNet stage 2", "refined logits"]
    differences = dict(compare_with_keras_hub(hub_model, model, images, points=points))
    assert differences["input conv"] < 1e-5 and differences["ResNet stage 1"] < 1e-5
    assert differences["ResNet stage 2"] > 1e-3


def test_mismatched_model_is_refused_before_anything_is_copied(hub_model, small_model):
    model = small_model
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match=r"input conv: keras-hub layer .* has weights of shapes "
                       r"\[\(3, 3, 3, 64\), \(64,\)\], seglab layer predict_input_conv needs "
                       r"\[\(3, 3, 3, 16\), \(16,\)\]"):  # fmt: skip
        convert_keras_hub_basnet(hub_model, model)
    for old, weight in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(weight))


def test_other_models_are_refused_with_the_reason(small_model):
    inputs = keras.Input((SIZE, SIZE, 3))
    names = ["refine_out", *[f"predict_out_{side}" for side in range(1, 8)]]
    outputs = [keras.layers.Activation("sigmoid", name=name)(
        keras.layers.Conv2D(1, 3, padding="same")(inputs)) for name in names]  # fmt: skip
    flat = keras.Model(inputs, outputs, name="flat")
    with pytest.raises(ValueError, match="'flat': not the BASNet layout at the x2 upsampling "
                       "of side 2: found layer 'conv2d.*' \\(Conv2D\\)"):  # fmt: skip
        convert_keras_hub_basnet(flat, small_model)
    plain = keras.Model(inputs, outputs[0], name="plain")
    with pytest.raises(ValueError, match="plain: not a keras-hub BASNet .no predict_out_1"):
        convert_keras_hub_basnet(plain, small_model)


def test_offline_preset_download_gives_a_clear_error(monkeypatch, small_model):
    import keras_hub
    import requests

    def offline(*args, **kwargs):  # what kagglehub raises without a network connection
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.BASNetBackbone, "from_preset", offline)
    message = (
        r"could not download keras-hub preset 'basnet_duts' \(offline\?\): ConnectionError: "
        r"Failed to resolve 'api.kaggle.com'; pass weights=None or a local preset directory"
    )
    with pytest.raises(WeightsDownloadError, match=message):
        load_basnet_preset(small_model, "basnet_duts")


def test_a_local_preset_directory_is_a_preset(tmp_path, hub_from_preset, small_model):
    run = tmp_path / "run"  # a seglab training run also keeps a config.json
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"recipe": "basnet-duts"}))
    # What save_to_preset writes (keras.saving.serialize_keras_object of the backbone).
    config = {"module": "keras_hub.src.models.basnet.basnet_backbone", "class_name":
              "BASNetBackbone", "config": {}, "registered_name": "keras_hub>BASNetBackbone"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert is_keras_hub_preset(tmp_path) and is_keras_hub_preset("basnet_duts")
    assert is_keras_hub_preset("kaggle://keras/basnet/keras/basnet_duts")
    assert not is_keras_hub_preset(run)
    assert not is_keras_hub_preset(tmp_path / "basnet_duts.weights.h5")
    # The directory reaches keras-hub's from_preset (which reads local folders itself).
    with pytest.raises(ValueError, match="input conv"):  # a 16-filter model, a 64-filter preset
        load_basnet_preset(small_model, tmp_path)
    assert hub_from_preset == [str(tmp_path)]


@pytest.mark.slow
def test_saved_preset_directory_round_trips(hub_model, tmp_path):
    hub_model.save_to_preset(str(tmp_path / "basnet"))
    model = basnet(input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "basnet"))
    images = np.random.default_rng(3).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    refined = _numpy(model(images, training=False))[0]
    hub_refined = _numpy(hub_model(images / 255.0, training=False))[0]
    np.testing.assert_allclose(refined, hub_refined, atol=1e-4)
