"""IoU and pixel accuracy of class-id maps from an accumulated confusion matrix (numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates a ``num_classes × num_classes`` confusion matrix (rows: truth, columns:
    prediction) from class-id maps, and derives IoU and pixel accuracy from it.

    ``get_results()``:

    - ``per_class_iou``: list of floats, ``TP / (TP + FP + FN)``; NaN for a class absent
      from both truth and prediction (its IoU is 0/0);
    - ``mean_iou``: the mean over classes present in the truth or the prediction (the NaNs
      left out), as ``keras.metrics.MeanIoU`` computes it;
    - ``mean_iou_all_classes``: the sum of the defined IoUs divided by ``num_classes``,
      i.e. an absent class counts as 0. Equal to ``mean_iou`` when every class appears;
    - ``pixel_accuracy``: correctly labelled pixels / all counted pixels;
    - ``confusion_matrix`` (int64 array), ``num_images``, and ``class_names`` when given.

    Pixels whose truth is ``ignore_label`` are not counted. Any other id outside
    ``[0, num_classes)`` is an error.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_label: int | None = None,
    ):
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.ignore_label = ignore_label
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.num_images = 0

    def step(self, pred, gt) -> None:
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            pred, gt = _squeeze_channel(pred), _squeeze_channel(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in size")
        for name, array in (("pred", pred), ("gt", gt)):
            if not np.issubdtype(array.dtype, np.integer):
                raise TypeError(f"{name} must hold integer class ids, got {array.dtype}")
        pred = pred.reshape(-1).astype(np.int64)
        gt = gt.reshape(-1).astype(np.int64)
        if self.ignore_label is not None:
            keep = gt != self.ignore_label
            pred, gt = pred[keep], gt[keep]
        for name, array in (("gt", gt), ("pred", pred)):
            outside = (array < 0) | (array >= self.num_classes)
            if outside.any():
                raise ValueError(
                    f"{name} has class id {int(array[outside][0])} outside [0, {self.num_classes})"
                )
        self.matrix += np.bincount(
            gt * self.num_classes + pred, minlength=self.num_classes**2
        ).reshape(self.num_classes, self.num_classes)
        self.num_images += 1

    def get_results(self) -> dict:
        if self.matrix.sum() == 0:
            raise ValueError("no pixels were counted: call step(pred, gt) first")
        true_positives = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - true_positives
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, true_positives / union, np.nan)
        results = {
            "pixel_accuracy": float(true_positives.sum() / self.matrix.sum()),
            "mean_iou": float(np.nanmean(iou)),
            "mean_iou_all_classes": float(np.nansum(iou) / self.num_classes),
            "per_class_iou": [float(value) for value in iou],
            "confusion_matrix": self.matrix.copy(),
            "num_images": self.num_images,
        }
        if self.class_names is not None:
            results["class_names"] = list(self.class_names)
        return results


def _squeeze_channel(array: np.ndarray) -> np.ndarray:
    return array[..., 0] if array.ndim >= 3 and array.shape[-1] == 1 else array
