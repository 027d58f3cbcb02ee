"""The ignore label (255 by default, as in PaddleSeg and MMSegmentation) through the data package:
set validation, ``make_dataset`` masks and sample weights, ``class_frequencies``."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from seglab.data.paddleseg import load_paddleseg
from seglab.data.pipeline import add_sample_weights, class_frequencies, make_dataset
from seglab.data.sets import DataError, SegmentationSet, TensorSource

# Stored values in 4x4 blocks; 255 marks unlabelled pixels, as along VOC object borders.
STORED = np.kron(np.array([[0, 1, 2, 255], [2, 255, 1, 0]], np.uint8), np.ones((4, 4), np.uint8))


def _write_pair(folder, stem, mask):
    folder.mkdir(parents=True, exist_ok=True)
    image_path, mask_path = folder / f"{stem}.png", folder / f"{stem}_mask.png"
    Image.fromarray(np.dstack([mask] * 3)).save(image_path)
    Image.fromarray(mask).save(mask_path)
    return str(image_path), str(mask_path)


def _class_set(pairs, num_classes=3, label_offset=0, **kwargs):
    return SegmentationSet("test", tuple(pairs), "class", num_classes, label_offset, **kwargs)


def _masks(source, **kwargs):
    dataset = make_dataset(source, image_size=STORED.shape, batch_size=8, **kwargs)
    return next(iter(dataset))


# ----------------------------------------------------------------------------------------------
# The sets


def test_class_sets_ignore_255_by_default_and_soft_sets_nothing():
    assert _class_set(()).ignore_label == 255
    assert _class_set((), ignore_label=None).ignore_label is None
    assert SegmentationSet("soft", (), "soft", 1).ignore_label is None
    assert TensorSource("tensors", None, "class", 3).ignore_label == 255
    # 255 stays the default only where it is no class: 256 classes or more use every value.
    assert _class_set((), num_classes=256).ignore_label is None
    assert _class_set((), num_classes=255, label_offset=1).ignore_label is None


@pytest.mark.parametrize(
    "num_classes, label_offset, ignore_label, message",
    [
        (3, 0, 2, "ignore_label=2 is also a class id for num_classes=3"),
        (3, 1, 0, "ignore_label=0 is also a class id"),  # converted id 0
        (3, 1, 3, r"ignore_label=3 is also a class id for num_classes=3 \(stored as 1..3\)"),
        (3, 0, -1, "ignore_label must be None or a mask value >= 0, got -1"),
        (3, 0, True, "ignore_label must be None or a mask value >= 0, got True"),
    ],
)
def test_an_ignore_label_that_is_a_class_id_is_refused(
    num_classes, label_offset, ignore_label, message
):
    with pytest.raises(ValueError, match=message):
        _class_set((), num_classes, label_offset, ignore_label=ignore_label)
    with pytest.raises(ValueError, match=message):
        TensorSource("t", None, "class", num_classes, label_offset, ignore_label=ignore_label)


def test_paddleseg_loader_ignores_255_as_paddleseg_does(sample_data):
    train, val = load_paddleseg(sample_data("microscopy_sample"), num_classes=2)
    assert train.ignore_label == val.ignore_label == 255
    train, _ = load_paddleseg(sample_data("microscopy_sample"), num_classes=2, ignore_label=None)
    assert train.ignore_label is None


# ----------------------------------------------------------------------------------------------
# make_dataset


def test_ignored_pixels_pass_the_check_and_keep_their_value(tmp_path):
    pair = _write_pair(tmp_path, "a", STORED)
    _, masks = _masks(_class_set([pair]))
    np.testing.assert_array_equal(masks.numpy()[0, ..., 0], STORED)


def test_label_offset_does_not_apply_to_the_ignore_label(tmp_path):
    # Trimap-like ids 1..3 with ignored pixels: 255 stays 255 (not 254).
    stored = np.where(STORED == 255, 255, STORED + 1).astype(np.uint8)
    pair = _write_pair(tmp_path, "t", stored)
    source = _class_set([pair], label_offset=1)
    _, masks = _masks(source)
    np.testing.assert_array_equal(masks.numpy()[0, ..., 0], STORED)
    # Decoded tensors (tensorflow-datasets) go the same way.
    tensors = TensorSource(
        "tensors",
        tf.data.Dataset.from_tensors((np.dstack([stored] * 3), stored[..., None])),
        "class",
        3,
        label_offset=1,
        size=1,
    )
    np.testing.assert_array_equal(_masks(tensors)[1].numpy(), masks.numpy())


def test_other_values_outside_the_classes_are_still_errors_naming_the_file(tmp_path):
    bad = STORED.copy()
    bad[0, 0] = 254
    pairs = [_write_pair(tmp_path, "good", STORED), _write_pair(tmp_path, "bad", bad)]
    with pytest.raises(DataError, match=r"bad_mask\.png: label values \{254\} outside \[0, 3\)"):
        _masks(_class_set(pairs))
    # Without an ignore label 255 is an error too.
    with pytest.raises(DataError, match=r"good_mask\.png: label values \{255\} outside \[0, 3\)"):
        _masks(_class_set(pairs[:1], ignore_label=None))


def test_ignored_pixels_get_sample_weight_zero(tmp_path):
    pair = _write_pair(tmp_path, "a", STORED)
    _, masks, weights = _masks(_class_set([pair]), class_weights=[1.0, 2.0, 5.0])
    expected = np.array([0.125, 0.25, 0.625], np.float32)[np.where(STORED == 255, 0, STORED)]
    expected[STORED == 255] = 0.0
    np.testing.assert_allclose(weights.numpy()[0, ..., 0], expected, rtol=1e-6)
    assert np.all(masks.numpy()[0, ..., 0][STORED == 255] == 255)


def test_add_sample_weights_with_and_without_an_ignore_label():
    masks = tf.constant([[0, 1], [255, 1]])
    _, _, weights = add_sample_weights([1.0, 3.0], ignore_label=255)(None, masks)
    np.testing.assert_allclose(weights.numpy(), [[0.25, 0.75], [0.0, 0.75]])
    # Without one, 255 is looked up in the table of 2 weights: TensorFlow refuses on CPU.
    with tf.device("/CPU:0"), pytest.raises(tf.errors.InvalidArgumentError):
        add_sample_weights([1.0, 3.0])(None, masks)


def test_class_frequencies_leave_ignored_pixels_out(tmp_path):
    stored = np.where(STORED == 255, 255, STORED + 1).astype(np.uint8)
    source = _class_set([_write_pair(tmp_path, "t", stored)], label_offset=1)
    expected = [np.sum(STORED == k) for k in range(3)]
    np.testing.assert_array_equal(class_frequencies(source), expected)
    from_batches = class_frequencies(make_dataset(source, image_size=8, batch_size=1), 3)
    assert from_batches.sum() == 8 * 8 * (STORED != 255).mean()


def test_masks_of_only_0_and_255_warn_when_the_dataset_is_made(tmp_path):
    binary = np.where(STORED == 0, 0, 255).astype(np.uint8)
    pair = _write_pair(tmp_path, "b", binary)
    with pytest.warns(UserWarning, match="every mask holds only 0 and 255.*divide them by 255"):
        _masks(_class_set([pair], num_classes=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0, 1 and 255: a two-class set with ignored pixels
        zero_one_255 = np.where(STORED == 255, 255, np.minimum(STORED, 1)).astype(np.uint8)
        _masks(_class_set([_write_pair(tmp_path, "a", zero_one_255)], num_classes=2))
