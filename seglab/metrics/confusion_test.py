import keras
import numpy as np
import pytest

from seglab.metrics.confusion import ConfusionMatrix

RNG = np.random.default_rng(1)


def test_confusion_matrix_against_hand_computed():
    gt = np.array([[0, 0, 1], [1, 1, 3]])
    pred = np.array([[0, 1, 1], [1, 0, 3]])
    matrix = ConfusionMatrix(4, class_names=["bg", "a", "b", "c"])
    matrix.step(pred, gt[..., None])
    matrix.step(np.array([[3]]), np.array([[3]]))
    results = matrix.get_results()
    # rows truth, columns prediction; class 2 absent from both
    expected = np.array([[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]])
    np.testing.assert_array_equal(results["confusion_matrix"], expected)
    iou = results["per_class_iou"]
    assert iou[0] == pytest.approx(1 / 3) and iou[1] == pytest.approx(2 / 4)
    assert np.isnan(iou[2]) and iou[3] == 1.0
    assert results["mean_iou"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert results["mean_iou_all_classes"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 4)
    assert results["pixel_accuracy"] == pytest.approx(5 / 7)
    assert results["num_images"] == 2 and results["class_names"][3] == "c"


def test_confusion_matrix_matches_keras_mean_iou():
    gt = RNG.integers(0, 5, size=(3, 16, 16))
    pred = RNG.integers(0, 4, size=(3, 16, 16))  # class 4 never predicted
    matrix = ConfusionMatrix(5)
    for p, g in zip(pred, gt, strict=True):
        matrix.step(p, g)
    keras_iou = keras.metrics.MeanIoU(num_classes=5)
    keras_iou.update_state(gt, pred)
    assert matrix.get_results()["mean_iou"] == pytest.approx(float(keras_iou.result()), abs=1e-5)


def _numpy_confusion(pred, gt, num_classes, ignore_label):
    keep = gt != ignore_label
    expected = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(expected, (gt[keep], pred[keep]), 1)
    return expected


def test_confusion_matrix_ignore_label_against_numpy():
    gt = RNG.integers(0, 4, size=(2, 12, 12))
    gt[RNG.random(gt.shape) < 0.3] = 255
    pred = RNG.integers(0, 4, size=gt.shape)
    matrix = ConfusionMatrix(4, ignore_label=255)
    for p, g in zip(pred, gt, strict=True):
        matrix.step(p, g)
    expected = _numpy_confusion(pred, gt, 4, 255)
    np.testing.assert_array_equal(matrix.matrix, expected)
    assert expected.sum() == np.count_nonzero(gt != 255) < gt.size
    assert matrix.get_results()["pixel_accuracy"] == pytest.approx(
        np.trace(expected) / expected.sum()
    )


def test_confusion_matrix_ignore_label_and_errors():
    matrix = ConfusionMatrix(2, ignore_label=255)
    matrix.step(np.array([1, 1, 0]), np.array([1, 255, 0]))
    assert matrix.get_results()["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError, match="gt has class id 7 outside"):
        matrix.step(np.array([1]), np.array([7]))
    with pytest.raises(TypeError, match="integer class ids"):
        matrix.step(np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match="3 class names given for 2 classes"):
        ConfusionMatrix(2, class_names=["a", "b", "c"])
