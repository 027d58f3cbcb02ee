"""Salient-object evaluation in the PySODMetrics style: ``step(pred, gt)`` per image on uint8
maps, then ``get_results()``.

- ``SODEvaluator``: the figures the papers report (MAE, max and mean Fβ, weighted Fβ, relaxed
  boundary Fβ, S-measure, E-measure), computed by ``py_sod_metrics`` (imported when first used);
- ``RelaxedBoundaryFmeasure`` and ``relaxed_boundary_precision_recall``: the relaxed boundary
  Fβ of BASNet and U²-Net, which ``py_sod_metrics`` lacks (scipy).

numpy only: no TensorFlow.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SODEvaluator", "RelaxedBoundaryFmeasure", "relaxed_boundary_precision_recall"]


def _as_2d(array, name: str) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 1)`` → ``(H, W)``."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be one map of shape (H, W) or (H, W, 1), got {array.shape}")
    return array


def _normalise_prediction(pred: np.ndarray) -> np.ndarray:
    """uint8 → float in [0, 1], min-max stretched unless constant: MATLAB's
    ``mapminmax(im2double(pred))``, as ``py_sod_metrics`` does before every measure."""
    pred = pred / 255.0
    low, high = pred.min(), pred.max()
    return (pred - low) / (high - low) if high > low else pred


def _one_pixel_boundary(mask: np.ndarray) -> np.ndarray:
    """``XOR(mask, erosion(mask))`` with a 3×3 square: the foreground pixels that touch the
    background through a side or a corner. Outside the image counts as foreground (OpenCV's
    and scikit-image's erosion default), so the image frame is not an object boundary."""
    from scipy import ndimage

    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=1)
    return np.logical_xor(mask, eroded)


def relaxed_boundary_precision_recall(
    pred_mask, gt_mask, tolerance: float = 3
) -> tuple[float, float]:
    """Relaxed boundary precision and recall of two binary masks of the same size.

    Each mask's boundary is ``XOR(mask, erosion(mask))`` (3×3 square structuring element,
    a one-pixel boundary). Precision is the fraction of predicted boundary pixels within
    ``tolerance`` pixels (Euclidean distance ``<= tolerance``) of a ground-truth boundary
    pixel; recall the fraction of ground-truth boundary pixels within ``tolerance`` of a
    predicted one.

    When a boundary is empty (an empty or full mask), the DAVIS benchmark's convention
    (Perazzi et al. 2016, ``f_boundary``) is used: both empty → ``(1, 1)``; only the predicted
    one empty → ``(1, 0)``; only the ground truth's empty → ``(0, 1)``. The F-measure of the
    last two is 0.
    """
    from scipy import ndimage

    pred_mask = np.asarray(pred_mask, dtype=bool)
    gt_mask = np.asarray(gt_mask, dtype=bool)
    if pred_mask.shape != gt_mask.shape or pred_mask.ndim != 2:
        raise ValueError(
            f"expected two 2-D masks of the same size, got {pred_mask.shape} and {gt_mask.shape}"
        )
    pred_boundary = _one_pixel_boundary(pred_mask)
    gt_boundary = _one_pixel_boundary(gt_mask)
    pred_count, gt_count = int(pred_boundary.sum()), int(gt_boundary.sum())
    if pred_count == 0 or gt_count == 0:
        return (1.0 if pred_count == 0 else 0.0), (1.0 if gt_count == 0 else 0.0)
    # distance from every pixel to the nearest boundary pixel of the other map
    to_gt = ndimage.distance_transform_edt(~gt_boundary)
    to_pred = ndimage.distance_transform_edt(~pred_boundary)
    precision = np.count_nonzero(pred_boundary & (to_gt <= tolerance)) / pred_count
    recall = np.count_nonzero(gt_boundary & (to_pred <= tolerance)) / gt_count
    return float(precision), float(recall)


def _fbeta(precision: float, recall: float, beta2: float) -> float:
    denominator = beta2 * precision + recall
    return 0.0 if denominator == 0 else (1 + beta2) * precision * recall / denominator


class RelaxedBoundaryFmeasure:
    """Relaxed boundary F-measure (relaxFβᵇ) of BASNet (Qin et al., CVPR 2019, Sec. 4.2) and
    U²-Net (Qin et al., 2020), in the PySODMetrics style.

    ``step(pred, gt)`` takes uint8 maps (0..255) like ``py_sod_metrics``: the prediction is
    min-max normalised (as the published maps were saved), then binarised at ``threshold``
    (foreground where ``>= threshold``); the mask is foreground where ``gt > 128``. Boundary
    precision and recall then come from ``relaxed_boundary_precision_recall`` (3×3 erosion,
    Euclidean distance ``<= tolerance``; the paper does not specify the neighbourhood or the
    structuring element; ρ = 3 is the paper's), and
    ``Fβ = (1 + β²) P R / (β² P + R)`` per image, β² = 0.3.

    ``get_results()``: ``relax_boundary_fmeasure`` (the mean over images of the per-image
    Fβ), ``relax_boundary_precision`` and ``relax_boundary_recall`` (means over images) and
    ``num_images``. The per-image values stay in ``fmeasures``, ``precisions``, ``recalls``.
    """

    def __init__(self, tolerance: float = 3, beta2: float = 0.3, threshold: float = 0.5):
        if tolerance < 0:
            raise ValueError(f"tolerance must be at least 0 pixels, got {tolerance}")
        self.tolerance = tolerance
        self.beta2 = beta2
        self.threshold = threshold
        self.precisions: list[float] = []
        self.recalls: list[float] = []
        self.fmeasures: list[float] = []

    def step(self, pred, gt) -> None:
        pred = _as_2d(pred, "pred")
        gt = _as_2d(gt, "gt")
        if pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in size")
        precision, recall = relaxed_boundary_precision_recall(
            _normalise_prediction(pred) >= self.threshold, gt > 128, self.tolerance
        )
        self.precisions.append(precision)
        self.recalls.append(recall)
        self.fmeasures.append(_fbeta(precision, recall, self.beta2))

    def get_results(self) -> dict:
        if not self.fmeasures:
            raise ValueError("no images were evaluated: call step(pred, gt) first")
        return {
            "relax_boundary_fmeasure": float(np.mean(self.fmeasures)),
            "relax_boundary_precision": float(np.mean(self.precisions)),
            "relax_boundary_recall": float(np.mean(self.recalls)),
            "num_images": len(self.fmeasures),
        }


class SODEvaluator:
    """Salient-object metrics over a set of maps, through ``py_sod_metrics``.

    ``step(pred, gt)`` takes one prediction and its mask as ``uint8`` arrays (0..255) of the
    same size, ``(H, W)`` or ``(H, W, 1)``. As in the published evaluation code, each
    prediction is min-max normalised and the mask is foreground where ``gt > 128``.

    ``get_results()`` gives plain floats:

    - ``mae``: mean absolute error (lower is better);
    - ``max_fmeasure``: the maximum over 256 thresholds of the dataset-mean Fβ, β² = 0.3;
    - ``mean_fmeasure``: the mean of that Fβ curve;
    - ``weighted_fmeasure``: weighted Fβ (Margolin et al., CVPR 2014; ``py_sod_metrics``'
      ``WeightedFmeasure``), β² = 1 as in the authors' code, mean over images;
    - ``relax_boundary_fmeasure``: relaxed boundary Fβ (relaxFβᵇ of BASNet and U²-Net),
      β² = 0.3, boundary tolerance ``boundary_tolerance`` pixels (ρ = 3 in the papers),
      mean over images; see ``RelaxedBoundaryFmeasure``;
    - ``smeasure``: S-measure (Sα, α = 0.5), structural similarity;
    - ``mean_emeasure``: the mean of the dataset-mean E-measure curve over thresholds
      (what most papers call "Eφ" or "mean E");
    - ``max_emeasure``: the maximum of that curve;
    - ``num_images``.
    """

    def __init__(self, boundary_tolerance: float = 3):
        from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure, WeightedFmeasure

        with warnings.catch_warnings():
            # Fmeasure warns that FmeasureV2 will replace it; it is still the reference one.
            warnings.simplefilter("ignore", UserWarning)
            self._fmeasure = Fmeasure(beta=0.3)
        self._mae = MAE()
        self._smeasure = Smeasure()
        self._emeasure = Emeasure()
        self._weighted_fmeasure = WeightedFmeasure()
        self._relax_boundary_fmeasure = RelaxedBoundaryFmeasure(tolerance=boundary_tolerance)
        self.num_images = 0

    def step(self, pred, gt) -> None:
        pred = _as_2d(pred, "pred")
        gt = _as_2d(gt, "gt")
        for name, array in (("pred", pred), ("gt", gt)):
            if array.dtype != np.uint8:
                raise TypeError(
                    f"{name} must be uint8 with values 0..255, got {array.dtype} "
                    "(multiply probabilities by 255 and round)"
                )
        if pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in size")
        for metric in (
            self._mae,
            self._fmeasure,
            self._smeasure,
            self._emeasure,
            self._weighted_fmeasure,
            self._relax_boundary_fmeasure,
        ):
            metric.step(pred=pred, gt=gt)
        self.num_images += 1

    def get_results(self) -> dict:
        if self.num_images == 0:
            raise ValueError("no images were evaluated: call step(pred, gt) first")
        fm_curve = self._fmeasure.get_results()["fm"]["curve"]
        em_curve = self._emeasure.get_results()["em"]["curve"]
        return {
            "mae": float(self._mae.get_results()["mae"]),
            "max_fmeasure": float(fm_curve.max()),
            "mean_fmeasure": float(fm_curve.mean()),
            "weighted_fmeasure": float(self._weighted_fmeasure.get_results()["wfm"]),
            "relax_boundary_fmeasure": self._relax_boundary_fmeasure.get_results()[
                "relax_boundary_fmeasure"
            ],
            "smeasure": float(self._smeasure.get_results()["sm"]),
            "mean_emeasure": float(em_curve.mean()),
            "max_emeasure": float(em_curve.max()),
            "num_images": self.num_images,
        }
