import numpy as np
import pytest
from scipy.io import loadmat

from seglab.display.colors import as_uint8_colormap, decode_segmentation, default_palette, overlay


def test_default_palette_distinct_with_black_background():
    palette = default_palette(300)
    assert palette.shape == (300, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1:5].tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert len({tuple(c) for c in palette}) == 300
    with pytest.raises(ValueError, match="at least 1"):
        default_palette(0)


def test_decode_segmentation_exact_colours():
    colormap = np.array([[0, 0, 0], [10, 20, 30], [200, 100, 50]], np.uint8)
    ids = np.array([[[0], [2]], [[1], [1]]], np.int32)  # (H, W, 1)
    rgb = decode_segmentation(ids, colormap)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 1].tolist() == [200, 100, 50] and rgb[1, 0].tolist() == [10, 20, 30]
    batch = decode_segmentation(np.stack([ids, ids]), colormap)
    assert batch.shape == (2, 2, 2, 3)
    default = decode_segmentation(np.array([[0, 3]]))
    assert default[0, 1].tolist() == default_palette(4)[3].tolist()
    with pytest.raises(ValueError, match="class id 3 but the colormap has 3 colours"):
        decode_segmentation(np.array([[3]]), colormap)


def test_float_colormap_conversion():
    # k / 256 (MATLAB) and k / 255 (matplotlib) both come back exactly.
    k = np.arange(256)
    assert (as_uint8_colormap(np.stack([k / 256] * 3, 1)) == k[:, None]).all()
    assert (as_uint8_colormap(np.stack([k / 255] * 3, 1)) == k[:, None]).all()
    with pytest.raises(ValueError, match="shape"):
        as_uint8_colormap(np.zeros((4, 4)))


def test_cihp_colormap_gives_lip_colours(sample_data):
    path = sample_data("cihp_sample") / "instance-level_human_parsing" / "human_colormap.mat"
    colormap = loadmat(path)["colormap"]
    rgb = decode_segmentation(np.arange(20).reshape(4, 5), colormap).reshape(20, 3)
    # The published LIP/CIHP colours: background, hat, hair, glove, sunglasses, ..., right shoe
    assert rgb[:5].tolist() == [[0, 0, 0], [128, 0, 0], [255, 0, 0], [0, 85, 0], [170, 0, 51]]
    assert rgb[13].tolist() == [0, 0, 255] and rgb[19].tolist() == [255, 170, 0]


def test_overlay_arithmetic():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.zeros((2, 2, 3), np.uint8)
    mask[0, 0] = [255, 0, 50]
    blended = overlay(image, mask, alpha=0.25)
    assert blended[0, 0].tolist() == [139, 75, 88]  # 0.75*100 + 0.25*(255, 0, 50), rounded
    assert blended[1, 1].tolist() == [75, 75, 75]
    assert (overlay(image / 255.0, mask, alpha=0.0) == image).all()
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, mask, alpha=1.5)
    with pytest.raises(ValueError, match="differ"):
        overlay(image, np.zeros((3, 2, 3), np.uint8))
