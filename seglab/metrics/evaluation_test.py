import warnings

import keras
import numpy as np
import pytest
from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure, WeightedFmeasure

from seglab.metrics.evaluation import (
    ConfusionMatrix,
    RelaxedBoundaryFmeasure,
    SODEvaluator,
    evaluate,
    format_table,
    relaxed_boundary_precision_recall,
)

RNG = np.random.default_rng(1)


def _saliency_pairs(count=3, size=(24, 32)):
    pairs = []
    for _ in range(count):
        gt = np.zeros(size, np.uint8)
        top, left = RNG.integers(0, 10, size=2)
        gt[top : top + 10, left : left + 14] = 255
        noise = RNG.normal(0, 40, size=size)
        pred = np.clip(gt * 0.8 + noise + 20, 0, 255).astype(np.uint8)
        pairs.append((pred, gt))
    return pairs


def test_sod_evaluator_equals_py_sod_metrics():
    pairs = _saliency_pairs()
    evaluator = SODEvaluator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = [MAE(), Fmeasure(beta=0.3), Smeasure(), Emeasure(), WeightedFmeasure()]
    for pred, gt in pairs:
        evaluator.step(pred[..., None], gt)  # (H, W, 1) is accepted too
        for metric in direct:
            metric.step(pred=pred, gt=gt)
    results = evaluator.get_results()
    fm_curve = direct[1].get_results()["fm"]["curve"]
    em_curve = direct[3].get_results()["em"]["curve"]
    assert results["mae"] == pytest.approx(direct[0].get_results()["mae"], abs=1e-12)
    assert results["max_fmeasure"] == pytest.approx(fm_curve.max(), abs=1e-12)
    assert results["mean_fmeasure"] == pytest.approx(fm_curve.mean(), abs=1e-12)
    assert results["smeasure"] == pytest.approx(direct[2].get_results()["sm"], abs=1e-12)
    assert results["mean_emeasure"] == pytest.approx(em_curve.mean(), abs=1e-12)
    assert results["max_emeasure"] == pytest.approx(em_curve.max(), abs=1e-12)
    assert results["weighted_fmeasure"] == pytest.approx(direct[4].get_results()["wfm"], abs=1e-12)
    assert 0.3 < results["weighted_fmeasure"] < 1.0
    assert results["num_images"] == 3
    assert 0.0 < results["mae"] < 0.5 and results["max_fmeasure"] > 0.5


# ------------------------------------------------------------------------------------------
# Relaxed boundary F-measure: values derived by hand. Boundaries are XOR(mask, 3×3 erosion);
# a 6×6 square's boundary is its 20-pixel ring (36 pixels minus the 4×4 interior).


def _square(top, left, height=6, width=6, size=(20, 24)):
    mask = np.zeros(size, bool)
    mask[top : top + height, left : left + width] = True
    return mask


def _relax_fbeta(precision, recall):
    return 1.3 * precision * recall / (0.3 * precision + recall)


def test_relaxed_boundary_square_shifted_by_2_px_matches_fully():
    # ring rows 5..10, cols 5..10 vs the same ring at cols 7..12: every pixel of either ring
    # is at most 2 px from the other ring (columns 2 apart; rows 5 and 10 shared).
    assert relaxed_boundary_precision_recall(_square(5, 7), _square(5, 5)) == (1.0, 1.0)


def test_relaxed_boundary_square_shifted_by_5_px_is_partial():
    # Predicted ring at cols 10..15 against the ring at cols 5..10. Its left column (col 10,
    # 6 px) lies on the truth's right column: distance 0. Its top and bottom rows beyond it
    # (cols 11..15, 5 px each) are c - 10 px from the truth's corner (row, 10): cols 11..13
    # within 3, cols 14..15 not. Its right column's 4 inner pixels are 5 px away.
    # Within: 6 + 3 + 3 = 12 of 20. The situation is mirror-symmetric, so recall is the same.
    precision, recall = relaxed_boundary_precision_recall(_square(5, 10), _square(5, 5))
    assert precision == pytest.approx(12 / 20) and recall == pytest.approx(12 / 20)


def test_relaxed_boundary_wide_prediction_precision_differs_from_recall():
    # Truth: 6×6 square, rows 5..10, cols 5..10 (ring of 20). Prediction: 6×12 rectangle,
    # rows 5..10, cols 5..16 (ring of 2·12 + 2·4 = 32).
    # Precision: top and bottom rows within 3 px of the truth for cols 5..13 (9 each), left
    # column's inner 4 on the truth, right column (col 16) 6 px away: (9 + 9 + 4) / 32.
    # Recall: the truth's top, bottom and left sides lie on the prediction (6 + 6 + 4); its
    # right side's inner pixels (rows 6..9, col 10) are 1, 2, 2, 1 px from the prediction's
    # top or bottom row: all 20 within.
    prediction = _square(5, 5, width=12)
    precision, recall = relaxed_boundary_precision_recall(prediction, _square(5, 5))
    assert precision == pytest.approx(22 / 32) and recall == 1.0
    metric = RelaxedBoundaryFmeasure()
    metric.step(prediction.astype(np.uint8) * 255, _square(5, 5).astype(np.uint8) * 255)
    # (1.3 · 11/16) / (0.3 · 11/16 + 1) = 14.3 / 19.3
    assert metric.get_results()["relax_boundary_fmeasure"] == pytest.approx(143 / 193)


def test_relaxed_boundary_tolerance_is_euclidean_and_inclusive():
    # A one-pixel object is its own boundary (its erosion is empty).
    truth = np.zeros((20, 20), bool)
    truth[10, 10] = True

    def scores(row, col):
        prediction = np.zeros_like(truth)
        prediction[row, col] = True
        return relaxed_boundary_precision_recall(prediction, truth)

    assert scores(13, 10) == (1.0, 1.0)  # 3 px: within ρ = 3
    assert scores(12, 12) == (1.0, 1.0)  # √8 ≈ 2.83 px
    assert scores(13, 12) == (0.0, 0.0)  # √13 ≈ 3.61 px (a chessboard distance would say 3)
    assert scores(14, 10) == (0.0, 0.0)


def test_relaxed_boundary_erosion_uses_a_3x3_square():
    # Truth: the diamond |dr| + |dc| <= 2 (13 pixels). Eroded by a 3×3 square only its centre
    # survives, so its boundary has 12 pixels: 4 at distance 1 from the centre, 4 at √2,
    # 4 at 2. (A 4-neighbour cross would keep 5 pixels and leave 8, none at distance 1.)
    # Prediction: the centre pixel alone. With ρ = 1: precision 1 (the centre is 1 px from
    # the boundary), recall 4/12, Fβ = (1.3 · 1/3) / (0.3 + 1/3) = 13/19.
    rows, cols = np.mgrid[:9, :9]
    truth = (np.abs(rows - 4) + np.abs(cols - 4)) <= 2
    prediction = np.zeros_like(truth)
    prediction[4, 4] = True
    precision, recall = relaxed_boundary_precision_recall(prediction, truth, tolerance=1)
    assert precision == 1.0 and recall == pytest.approx(1 / 3)
    assert _relax_fbeta(precision, recall) == pytest.approx(13 / 19)


def test_relaxed_boundary_image_frame_is_not_a_boundary():
    # Left part of the image: the only boundary is the column where the object ends
    # (col 9 for the truth, col 13 for the prediction), 4 px apart, beyond ρ = 3. Were the
    # frame a boundary, the top, bottom and left edges would match.
    truth = np.zeros((20, 20), bool)
    truth[:, :10] = True
    prediction = np.zeros_like(truth)
    prediction[:, :14] = True
    assert relaxed_boundary_precision_recall(prediction, truth) == (0.0, 0.0)
    full = np.ones_like(truth)
    assert relaxed_boundary_precision_recall(full, full) == (1.0, 1.0)


def test_relaxed_boundary_empty_maps_follow_the_davis_convention():
    empty = np.zeros((12, 12), bool)
    square = _square(3, 3, size=(12, 12))
    assert relaxed_boundary_precision_recall(empty, empty) == (1.0, 1.0)
    assert relaxed_boundary_precision_recall(empty, square) == (1.0, 0.0)
    assert relaxed_boundary_precision_recall(square, empty) == (0.0, 1.0)
    metric = RelaxedBoundaryFmeasure()
    as_uint8 = [m.astype(np.uint8) * 255 for m in (empty, square)]
    metric.step(as_uint8[0], as_uint8[0])
    metric.step(as_uint8[0], as_uint8[1])
    metric.step(as_uint8[1], as_uint8[0])
    assert metric.fmeasures == [1.0, 0.0, 0.0]


def test_relaxed_boundary_fmeasure_averages_per_image_and_binarises_at_half():
    truth = _square(5, 5).astype(np.uint8) * 255
    metric = RelaxedBoundaryFmeasure()
    # min-max normalised, then >= 0.5: a square of 100 on 0 is a square; 60 on a 40..45
    # background stretches to 1 on 0..0.25.
    metric.step(_square(5, 7).astype(np.uint8) * 100, truth)  # shifted 2 px: 1
    shifted_5 = np.where(_square(5, 10), 60, 40 + RNG.integers(0, 6, size=(20, 24)))
    metric.step(shifted_5.astype(np.uint8)[..., None], truth)  # 0.6
    metric.step(_square(5, 5, width=12).astype(np.uint8) * 255, truth)  # 143/193
    results = metric.get_results()
    assert metric.fmeasures == pytest.approx([1.0, 0.6, 143 / 193])
    assert results["relax_boundary_fmeasure"] == pytest.approx((1.0 + 0.6 + 143 / 193) / 3)
    assert results["relax_boundary_precision"] == pytest.approx((1.0 + 0.6 + 22 / 32) / 3)
    assert results["relax_boundary_recall"] == pytest.approx((1.0 + 0.6 + 1.0) / 3)
    assert results["num_images"] == 3
    # a soft truth is foreground where > 128, as in py_sod_metrics
    metric = RelaxedBoundaryFmeasure()
    metric.step(truth, np.where(_square(5, 5), 129, 128).astype(np.uint8))
    assert metric.fmeasures == [1.0]


def test_relaxed_boundary_rejects_bad_input():
    metric = RelaxedBoundaryFmeasure()
    with pytest.raises(ValueError, match="no images"):
        metric.get_results()
    with pytest.raises(ValueError, match="differ in size"):
        metric.step(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="same size"):
        relaxed_boundary_precision_recall(np.zeros((4, 4)), np.zeros((5, 4)))


def test_sod_evaluator_rejects_bad_input():
    evaluator = SODEvaluator()
    with pytest.raises(TypeError, match="uint8"):
        evaluator.step(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        evaluator.step(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        evaluator.get_results()


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


def _constant_model(outputs):
    """A callable 'model' whose prediction for each batch is given."""
    batches = iter(outputs)

    class Model:
        def predict_on_batch(self, images):
            return next(batches)

    return Model()


def test_evaluate_salient_list_output_equals_direct():
    pairs = _saliency_pairs(count=4)
    probabilities = np.stack([p for p, _ in pairs]).astype(np.float32)[..., None] / 255.0
    masks = np.stack([g for _, g in pairs]).astype(np.float32)[..., None] / 255.0
    images = np.zeros((4, 24, 32, 3), np.float32)
    dataset = [(images[:2], masks[:2]), (images[2:], masks[2:], np.ones_like(masks[2:]))]
    side = np.zeros_like(probabilities)
    model = _constant_model([[probabilities[:2], side[:2]], [probabilities[2:], side[2:]]])
    results = evaluate(model, dataset, from_logits=False)
    direct = SODEvaluator()
    for pred, gt in pairs:
        direct.step(pred, gt)
    assert results["task"] == "salient" and results["from_logits"] is False
    for key, value in direct.get_results().items():
        assert results[key] == pytest.approx(value, abs=1e-9), key
    assert {"weighted_fmeasure", "relax_boundary_fmeasure"} <= results.keys()


def test_evaluate_multiclass_keras_model_with_deep_supervision_targets():
    inputs = keras.Input((8, 8, 3))
    logits = keras.layers.Conv2D(3, 1)(inputs)
    model = keras.Model(inputs, [logits, logits])
    images = RNG.normal(size=(5, 8, 8, 3)).astype(np.float32)
    masks = RNG.integers(0, 3, size=(5, 8, 8, 1)).astype(np.int32)
    dataset = [(images[:3], (masks[:3], masks[:3])), (images[3:], (masks[3:], masks[3:]))]
    results = evaluate(model, dataset, class_names=["bg", "pet", "edge"])
    predicted = np.argmax(model.predict(images, verbose=0)[0], axis=-1)
    expected = ConfusionMatrix(3)
    expected.step(predicted, masks)
    assert results["task"] == "multiclass" and results["num_images"] == 5
    np.testing.assert_array_equal(results["confusion_matrix"], expected.matrix)
    assert evaluate(model, dataset, max_batches=1)["num_images"] == 3
    with pytest.raises(ValueError, match="num_classes=4 but the model outputs 3"):
        evaluate(model, dataset, num_classes=4)
    with pytest.raises(ValueError, match="one-channel"):
        evaluate(model, dataset, task="salient")


def test_evaluate_passes_ignore_label_to_the_confusion_matrix():
    logits = RNG.normal(size=(2, 6, 6, 3)).astype(np.float32)
    masks = RNG.integers(0, 3, size=(2, 6, 6, 1)).astype(np.int32)
    masks[:, :2] = 255  # e.g. an unlabelled border
    dataset = [(np.zeros((2, 6, 6, 3), np.float32), masks)]
    results = evaluate(_constant_model([logits]), dataset, ignore_label=255)
    expected = _numpy_confusion(np.argmax(logits, axis=-1), masks[..., 0], 3, 255)
    np.testing.assert_array_equal(results["confusion_matrix"], expected)
    assert expected.sum() == 2 * 4 * 6
    with pytest.raises(ValueError, match="outside"):  # without it 255 is an unknown class
        evaluate(_constant_model([logits]), dataset)
    soft = [(np.zeros((2, 6, 6, 3), np.float32), np.zeros((2, 6, 6, 1), np.float32))]
    with pytest.raises(ValueError, match="ignore_label applies to task='multiclass'"):
        evaluate(_constant_model([logits[..., :1]]), soft, from_logits=True, ignore_label=255)


def test_evaluate_one_channel_logits_with_integer_masks_is_two_class():
    logits = np.array([[-2.0, 0.5], [3.0, -0.1]], np.float32).reshape(1, 2, 2, 1)
    masks = np.array([[0, 1], [1, 1]], np.int32).reshape(1, 2, 2, 1)
    dataset = [(np.zeros((1, 2, 2, 3), np.float32), masks)]
    results = evaluate(_constant_model([logits]), dataset, threshold=0.5, from_logits=True)
    # sigmoid(0.5) >= 0.5, sigmoid(-0.1) < 0.5: predicted [[0,1],[1,0]]
    assert results["task"] == "multiclass" and results["from_logits"] is True
    assert results["pixel_accuracy"] == pytest.approx(3 / 4)
    assert results["per_class_iou"] == pytest.approx([1 / 2, 2 / 3])


def test_evaluate_errors():
    dataset = [(np.zeros((1, 4, 4, 3)), np.zeros((1, 5, 5, 1), np.float32))]
    with pytest.raises(ValueError, match="differ in size"):
        evaluate(_constant_model([np.zeros((1, 4, 4, 1))]), dataset)
    with pytest.raises(ValueError, match="no batches"):
        evaluate(_constant_model([]), [])
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate(_constant_model([]), [], task="binary")


def test_format_table_with_reference():
    results = {
        "task": "salient",
        "mae": 0.05123,
        "max_fmeasure": 0.8,
        "smeasure": 0.75,
        "num_images": 80,
    }
    table = format_table(
        results, reference={"MAE": 0.042, "Sm": 0.866}, source="Qin et al. 2019, DUTS-TE"
    )
    lines = table.splitlines()
    assert lines[0] == "Evaluation: salient, 80 images"
    assert "| MAE ↓ | 0.0512 | 0.0420 |" in lines
    assert "| S-measure Sα ↑ | 0.7500 | 0.8660 |" in lines
    assert "| max Fβ (β²=0.3) ↑ | 0.8000 |  |" in lines
    assert lines[-1] == "Reference: Qin et al. 2019, DUTS-TE"
    # the spellings the recipes use
    table = format_table(results, reference={"max_fbeta": 0.852, "s_measure": 0.861})
    assert "| max Fβ (β²=0.3) ↑ | 0.8000 | 0.8520 |" in table
    assert "| S-measure Sα ↑ | 0.7500 | 0.8610 |" in table
    # the papers' other columns
    results = {**results, "weighted_fmeasure": 0.7, "relax_boundary_fmeasure": 0.6}
    table = format_table(results, reference={"relaxFbeta": 0.603, "weighted_fbeta": 0.803})
    assert "| weighted Fβ (β²=1) ↑ | 0.7000 | 0.8030 |" in table
    assert "| relaxed boundary Fβ (β²=0.3, ρ=3) ↑ | 0.6000 | 0.6030 |" in table
    table = format_table(results, reference={"relax_boundary_fbeta": 0.6, "wFm": 0.8})
    assert "| relaxed boundary Fβ (β²=0.3, ρ=3) ↑ | 0.6000 | 0.6000 |" in table
    assert "| weighted Fβ (β²=1) ↑ | 0.7000 | 0.8000 |" in table


def test_format_table_per_class_and_nan():
    results = ConfusionMatrix(3, class_names=["bg", "cat", "dog"])
    results.step(np.array([0, 1]), np.array([0, 1]))
    table = format_table(results.get_results(), reference={"mIoU": 0.7, "source": "paper"})
    assert "| mean IoU (classes present) ↑ | 1.0000 | 0.7000 |" in table
    assert "| IoU dog | n/a |  |" in table
    assert table.endswith("Reference: paper")
