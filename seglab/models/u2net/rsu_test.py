import numpy as np
import pytest
from keras import layers, ops

from seglab.models.u2net.rsu import RSU


def _conv_table(block):
    """(name, input channels, filters, dilation) of every conv-BN-ReLU unit, in build order."""
    units = [block.input_unit, *block.encoder_units, *block.decoder_units]
    return [
        (unit.name, unit.conv.kernel.shape[2], unit.filters, unit.dilation_rate) for unit in units
    ]


def test_rsu7_conv_table_matches_official_code():
    # RSU7(in_ch=3, mid_ch=32, out_ch=64) of the official U2NET stage 1.
    block = RSU(7, 32, 64)
    block.build((None, None, None, 3))
    assert _conv_table(block) == [
        ("conv_in", 3, 64, 1),
        ("conv1", 64, 32, 1),
        ("conv2", 32, 32, 1),
        ("conv3", 32, 32, 1),
        ("conv4", 32, 32, 1),
        ("conv5", 32, 32, 1),
        ("conv6", 32, 32, 1),
        ("conv7", 32, 32, 2),
        ("conv6d", 64, 32, 1),
        ("conv5d", 64, 32, 1),
        ("conv4d", 64, 32, 1),
        ("conv3d", 64, 32, 1),
        ("conv2d", 64, 32, 1),
        ("conv1d", 64, 64, 1),
    ]


def test_rsu4f_conv_table_matches_official_code():
    # RSU4F(in_ch=1024, mid_ch=256, out_ch=512) of the official U2NET stage 5d.
    block = RSU(4, 256, 512, dilated=True)
    block.build((None, None, None, 1024))
    assert _conv_table(block) == [
        ("conv_in", 1024, 512, 1),
        ("conv1", 512, 256, 1),
        ("conv2", 256, 256, 2),
        ("conv3", 256, 256, 4),
        ("conv4", 256, 256, 8),
        ("conv3d", 512, 256, 4),
        ("conv2d", 512, 256, 2),
        ("conv1d", 512, 512, 1),
    ]


def test_rsu4_trainable_parameters_match_hand_count():
    # 3×3 conv weights + bias, and BN gamma + beta, for each unit of RSU4(64, 16, 64).
    def unit(cin, cout):
        return 9 * cin * cout + cout + 2 * cout

    expected = unit(64, 64) + unit(64, 16) + 3 * unit(16, 16) + 2 * unit(32, 16) + unit(32, 64)
    block = RSU(4, 16, 64)
    block.build((None, None, None, 64))
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == expected


def test_rsu4_forward_matches_the_official_wiring():
    """Recompute RSU-4 step by step as the official forward() does, with the block's own units."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 13, 11, 5)).astype("float32")
    block = RSU(4, 6, 8)
    output = ops.convert_to_numpy(block(x))

    units = {unit.name: unit for unit in [block.input_unit, *block.encoder_units]}
    units.update({unit.name: unit for unit in block.decoder_units})
    pool = layers.MaxPooling2D(2, strides=2, padding="same")

    def up(source, reference):
        size = (reference.shape[1], reference.shape[2])
        return ops.image.resize(source, size, interpolation="bilinear")

    def cat(a, b):
        return ops.concatenate([a, b], axis=-1)

    hxin = units["conv_in"](x)
    hx1 = units["conv1"](hxin)
    hx2 = units["conv2"](pool(hx1))
    hx3 = units["conv3"](pool(hx2))
    hx4 = units["conv4"](hx3)
    hx3d = units["conv3d"](cat(hx4, hx3))
    hx2d = units["conv2d"](cat(up(hx3d, hx2), hx2))
    hx1d = units["conv1d"](cat(up(hx2d, hx1), hx1))
    expected = ops.convert_to_numpy(hx1d + hxin)

    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    assert hx2.shape[1:3] == (7, 6) and hx3.shape[1:3] == (4, 3)  # ceil mode


def test_rsu4f_forward_matches_the_official_wiring():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 9, 7, 4)).astype("float32")
    block = RSU(4, 6, 8, dilated=True)
    output = ops.convert_to_numpy(block(x))

    units = {unit.name: unit for unit in [block.input_unit, *block.encoder_units]}
    units.update({unit.name: unit for unit in block.decoder_units})

    def cat(a, b):
        return ops.concatenate([a, b], axis=-1)

    hxin = units["conv_in"](x)
    hx1 = units["conv1"](hxin)
    hx2 = units["conv2"](hx1)
    hx3 = units["conv3"](hx2)
    hx4 = units["conv4"](hx3)
    hx3d = units["conv3d"](cat(hx4, hx3))
    hx2d = units["conv2d"](cat(hx3d, hx2))
    hx1d = units["conv1d"](cat(hx2d, hx1))
    expected = ops.convert_to_numpy(hx1d + hxin)

    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)


def test_same_padding_max_pool_is_pytorch_ceil_mode():
    # Negative values: a zero-padded pool would return 0 in the partial windows.
    rng = np.random.default_rng(2)
    x = -rng.uniform(1, 2, size=(1, 5, 7, 1)).astype("float32")
    pooled = ops.convert_to_numpy(layers.MaxPooling2D(2, strides=2, padding="same")(x))

    expected = np.empty((1, 3, 4, 1), "float32")
    for i in range(3):
        for j in range(4):
            expected[0, i, j, 0] = x[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 0].max()
    np.testing.assert_array_equal(pooled, expected)


@pytest.mark.parametrize("height,dilated", [(7, False), (6, False), (5, False), (4, True)])
def test_rsu_keeps_odd_spatial_sizes(height, dilated):
    block = RSU(height, 4, 8, dilated=dilated)
    output = block(np.zeros((1, 37, 53, 3), "float32"))
    assert tuple(output.shape) == (1, 37, 53, 8)


def test_rsu_config_round_trip():
    block = RSU(5, 16, 64, dilated=False, name="stage3")
    config = block.get_config()
    assert {k: config[k] for k in ("height", "mid_channels", "out_channels", "dilated")} == {
        "height": 5,
        "mid_channels": 16,
        "out_channels": 64,
        "dilated": False,
    }
    assert RSU.from_config(config).get_config() == config


def test_rsu_rejects_too_small_height():
    with pytest.raises(ValueError, match="height must be an integer >= 2"):
        RSU(1, 16, 64)
