import warnings

import numpy as np
import pytest
from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure, WeightedFmeasure

from seglab.metrics.salient import (
    RelaxedBoundaryFmeasure,
    SODEvaluator,
    relaxed_boundary_precision_recall,
)

RNG = np.random.default_rng(1)


def saliency_pairs(count=3, size=(24, 32)):
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
    pairs = saliency_pairs()
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
