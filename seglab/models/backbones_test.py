import socket

import numpy as np
import pytest
from keras import ops

from seglab.models import backbones
from seglab.models.backbones import (
    WeightsDownloadError,
    build_backbone,
    check_input_shape,
)


def _closed_port_url():
    """An http:// address on 127.0.0.1 where nothing listens (connection refused, no network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Point the ImageNet downloads at a dead local address and Keras' cache at tmp_path."""
    url = _closed_port_url()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(
        backbones,
        "_IMAGENET_SOURCES",
        {key: (url, file_hash) for key, (_, file_hash) in backbones._IMAGENET_SOURCES.items()},
    )
    return tmp_path


@pytest.mark.parametrize(
    "name, input_shape, file_name",
    [
        (
            "mobilenetv2",
            (96, 96, 3),
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5",
        ),
        # Sizes without their own ImageNet file use the 224 one, as keras.applications does.
        (
            "MobileNetV2",
            (64, 64, 3),
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        ),
        ("resnet50", (64, 64, 3), "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ],
)
def test_offline_imagenet_download_gives_a_clear_error(offline, name, input_shape, file_name):
    with pytest.raises(WeightsDownloadError) as caught:
        build_backbone(name, input_shape=input_shape, weights="imagenet")
    message = str(caught.value)
    assert "Could not download the ImageNet weights" in message
    assert str(offline / "models" / file_name) in message
    assert "weights=None" in message
    assert not (offline / "models" / file_name).exists()  # no half-written file left behind


def test_narrow_mobilenetv2_asks_for_its_own_imagenet_file(offline):
    # The file name keras.applications gives the ImageNet weights of width alpha = 0.35.
    with pytest.raises(WeightsDownloadError, match="kernels_0.35_96_no_top.h5"):
        build_backbone("mobilenetv2", input_shape=(96, 96, 3), weights="imagenet", alpha=0.35)


def test_alpha_is_refused_for_backbones_without_a_width_multiplier():
    with pytest.raises(ValueError, match="alpha.*mobilenetv2 only"):
        build_backbone("resnet50", input_shape=(64, 64, 3), weights=None, alpha=0.5)


def test_imagenet_file_copied_into_the_cache_by_hand_is_used_offline(offline):
    # Stand-in for the real file: a legacy .h5 weights file under the name Keras looks for.
    source = build_backbone("mobilenetv2", input_shape=(96, 96, 3), weights=None)
    (offline / "models").mkdir()
    source.save(
        offline / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    )

    loaded = build_backbone("mobilenetv2", input_shape=(96, 96, 3), weights="imagenet")

    for expected, actual in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(expected), ops.convert_to_numpy(actual))


def test_weights_path_is_loaded(tmp_path):
    source = build_backbone("mobilenetv2", input_shape=(64, 64, 3), weights=None)
    path = tmp_path / "encoder.weights.h5"
    source.save_weights(path)

    loaded = build_backbone("mobilenetv2", input_shape=(64, 64, 3), weights=str(path))

    for expected, actual in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(expected), ops.convert_to_numpy(actual))


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        build_backbone("resnet50", input_shape=(64, 64, 3), weights=missing)
    with pytest.raises(FileNotFoundError, match="'imagenet', None or the path"):
        build_backbone("resnet50", input_shape=(64, 64, 3), weights="imagnet")


def test_unknown_backbone_lists_the_supported_ones():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg16'.*mobilenetv2, resnet50"):
        build_backbone("vgg16", input_shape=(64, 64, 3), weights=None)


def test_backbone_is_headless_and_built_on_the_given_shape():
    model = build_backbone("resnet50", input_shape=(64, 96, 3), weights=None)
    assert model.output.shape == (None, 2, 3, 2048)
    assert not any(layer.name == "predictions" for layer in model.layers)


@pytest.mark.parametrize(
    "input_shape, message",
    [
        ((100, 128, 3), "multiples of 32"),
        ((128, 16, 3), "multiples of 32"),
        ((128, 128), r"\(height, width, channels\)"),
        ((128, 128, None), "channels"),
    ],
)
def test_check_input_shape_rejects(input_shape, message):
    with pytest.raises(ValueError, match=message):
        check_input_shape(input_shape, 32, "unet")


def test_check_input_shape_accepts_multiples_and_free_sizes():
    assert check_input_shape([64, 96, 3], 32, "unet") == (64, 96, 3)
    assert check_input_shape((None, None, 3), 32, "unet") == (None, None, 3)
