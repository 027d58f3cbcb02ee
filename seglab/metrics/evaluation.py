"""Evaluation after training, in the PySODMetrics style: ``step(pred, gt)`` per image, then
``get_results()``.

- ``SODEvaluator``: the salient-object figures papers report (MAE, max Fβ, weighted Fβ,
  relaxed boundary Fβ, S-measure, E-measure), computed by ``py_sod_metrics`` on uint8 maps
  (the relaxed boundary Fβ, which it lacks, by ``RelaxedBoundaryFmeasure`` here).
- ``ConfusionMatrix``: IoU and pixel accuracy for class-id maps, in numpy.
- ``evaluate(model, dataset)``: runs a model over a dataset and feeds the right one.
- ``format_table(results, reference)``: a markdown table, optionally beside a published figure.

numpy only (plus py_sod_metrics and scipy, imported when first used): no TensorFlow.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "SODEvaluator",
    "RelaxedBoundaryFmeasure",
    "relaxed_boundary_precision_recall",
    "ConfusionMatrix",
    "evaluate",
    "format_table",
]

TASKS = ("salient", "multiclass")


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


# ------------------------------------------------------------------------------------------
# Running a model over a dataset


def _iterate(dataset) -> Iterable:
    # tf.data datasets give numpy without this module importing TensorFlow.
    if hasattr(dataset, "as_numpy_iterator"):
        return dataset.as_numpy_iterator()
    return iter(dataset)


def _split_element(element, batch_index: int):
    """``(x, y)``, ``(x, y, w)`` or ``(x, (y, y, ...))`` → ``(x, y)`` as numpy."""
    if not isinstance(element, (tuple, list)) or len(element) < 2:
        raise ValueError(
            f"batch {batch_index}: expected (images, masks) or (images, masks, weights), "
            f"got {type(element).__name__}"
        )
    images, targets = element[0], element[1]
    if isinstance(targets, (tuple, list)):  # deep supervision repeats the mask
        targets = targets[0]
    return images, np.asarray(targets)


def _predict(model, images) -> np.ndarray:
    if hasattr(model, "predict_on_batch"):
        outputs = model.predict_on_batch(images)
    else:
        outputs = model(images, training=False)
    if isinstance(outputs, dict):
        raise ValueError("the model returns a dict; evaluate() expects a tensor or a list")
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]  # output 0 is the prediction; the rest are side outputs
    return np.asarray(outputs, dtype=np.float32)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def _salient_target(targets: np.ndarray) -> np.ndarray:
    if np.issubdtype(targets.dtype, np.floating):
        return np.round(np.clip(targets, 0.0, 1.0) * 255.0).astype(np.uint8)
    if targets.size and targets.max() > 1:
        raise ValueError(
            f"saliency targets of integer type must be 0/1 masks, found values up to "
            f"{targets.max()} (expected float32 in [0, 1] from make_dataset)"
        )
    return (targets * 255).astype(np.uint8)


def _declared_logits(model) -> bool:
    from seglab.models.heads import output_info

    try:
        return output_info(model).from_logits
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"cannot tell whether the model's one-channel output is logits or probabilities "
            f"({error}); pass from_logits=True or False"
        ) from None


def evaluate(
    model,
    dataset,
    task: str | None = None,
    num_classes: int | None = None,
    threshold: float = 0.5,
    max_batches: int | None = None,
    from_logits: bool | None = None,
    class_names: Sequence[str] | None = None,
    ignore_label: int | None = None,
) -> dict:
    """Run ``model`` over ``dataset`` and return the metrics as a dict.

    Args:
        model: a Keras model (``predict_on_batch`` is used) or any callable. When it returns
            a list, output 0 is evaluated.
        dataset: batches of ``(images, masks)``, ``(images, masks, weights)`` or
            ``(images, (masks, masks, ...))``: a ``tf.data.Dataset`` or any iterable.
        task: ``"salient"`` (``SODEvaluator``: MAE, Fβ, weighted Fβ, relaxed boundary
            Fβ, S, E) or ``"multiclass"``
            (``ConfusionMatrix``: IoU, pixel accuracy). When None: a model with several
            output channels is multi-class; a one-channel model is salient when the masks
            are floats (soft saliency maps) and two-class when they are integer ids.
        num_classes: for ``"multiclass"``; defaults to the output channels (2 for a
            one-channel output).
        threshold: for a one-channel output evaluated as ``"multiclass"``: class 1 where
            the probability is at least ``threshold``. The salient metrics sweep all
            thresholds themselves.
        max_batches: stop after this many batches.
        from_logits: only for one-channel outputs. When None it is read from the model's
            declared outputs (``seglab.models.output_info``); a callable that declares none
            must say it. Argmax over several channels needs no sigmoid either way.
        class_names: passed to ``ConfusionMatrix`` for the table.
        ignore_label: for ``"multiclass"``: pixels whose mask holds this id (e.g. 255) are
            left out of the confusion matrix. Not used by the salient metrics.

    Returns:
        The evaluator's ``get_results()`` plus ``task``, and ``from_logits`` for a
        one-channel output.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    evaluator = None
    channels = None
    for batch_index, element in enumerate(_iterate(dataset)):
        if max_batches is not None and batch_index >= max_batches:
            break
        images, targets = _split_element(element, batch_index)
        outputs = _predict(model, images)
        if outputs.ndim != 4:
            raise ValueError(f"expected model output (B, H, W, C), got {outputs.shape}")
        targets = _squeeze_channel(targets) if targets.ndim == 4 else targets
        if outputs.shape[:3] != targets.shape[:3]:
            raise ValueError(
                f"batch {batch_index}: model output {outputs.shape} and masks {targets.shape} "
                "differ in size"
            )
        if evaluator is None:
            channels = outputs.shape[-1]
            if task is None:
                task = (
                    "multiclass"
                    if channels > 1 or np.issubdtype(targets.dtype, np.integer)
                    else "salient"
                )
            if channels == 1 and from_logits is None:
                from_logits = _declared_logits(model)
            if task == "salient":
                if channels != 1:
                    raise ValueError(
                        f"task='salient' needs a one-channel output; the model gives {channels}"
                    )
                if ignore_label is not None:
                    raise ValueError(
                        "ignore_label applies to task='multiclass'; the salient metrics "
                        "count every pixel"
                    )
                evaluator = SODEvaluator()
            else:
                if num_classes is None:
                    num_classes = channels if channels > 1 else 2
                if channels > 1 and num_classes != channels:
                    raise ValueError(
                        f"num_classes={num_classes} but the model outputs {channels} channels"
                    )
                evaluator = ConfusionMatrix(
                    num_classes, class_names=class_names, ignore_label=ignore_label
                )
        if channels == 1:
            probabilities = _sigmoid(outputs[..., 0]) if from_logits else outputs[..., 0]
            if task == "salient":
                predictions = np.round(np.clip(probabilities, 0.0, 1.0) * 255.0).astype(np.uint8)
                targets = _salient_target(targets)
            else:
                predictions = (probabilities >= threshold).astype(np.int64)
        else:
            predictions = np.argmax(outputs, axis=-1)
        for prediction, target in zip(predictions, targets, strict=True):
            evaluator.step(prediction, target)
    if evaluator is None:
        raise ValueError("the dataset gave no batches to evaluate")
    results = {"task": task, **evaluator.get_results()}
    if channels == 1:
        results["from_logits"] = from_logits
    return results


# ------------------------------------------------------------------------------------------
# Printing

# key: (label, lower_is_better)
_LABELS = {
    "mae": ("MAE", True),
    "max_fmeasure": ("max Fβ (β²=0.3)", False),
    "mean_fmeasure": ("mean Fβ (β²=0.3)", False),
    "weighted_fmeasure": ("weighted Fβ (β²=1)", False),
    "relax_boundary_fmeasure": ("relaxed boundary Fβ (β²=0.3, ρ=3)", False),
    "smeasure": ("S-measure Sα", False),
    "mean_emeasure": ("mean E-measure", False),
    "max_emeasure": ("max E-measure", False),
    "pixel_accuracy": ("pixel accuracy", False),
    "mean_iou": ("mean IoU (classes present)", False),
    "mean_iou_all_classes": ("mean IoU (all classes)", False),
}
# Other spellings a published table may use, normalised (lower case, letters and digits).
_ALIASES = {
    "miou": "mean_iou",
    "meaniou": "mean_iou",
    "iou": "mean_iou",
    "maxf": "max_fmeasure",
    "maxfbeta": "max_fmeasure",
    "fmax": "max_fmeasure",
    "meanf": "mean_fmeasure",
    "wfm": "weighted_fmeasure",
    "wf": "weighted_fmeasure",
    "fbw": "weighted_fmeasure",
    "weightedf": "weighted_fmeasure",
    "weightedfbeta": "weighted_fmeasure",
    "relaxf": "relax_boundary_fmeasure",
    "relaxfb": "relax_boundary_fmeasure",
    "relaxfbeta": "relax_boundary_fmeasure",
    "relaxfbetab": "relax_boundary_fmeasure",
    "relaxboundaryfbeta": "relax_boundary_fmeasure",
    "relaxedboundaryfbeta": "relax_boundary_fmeasure",
    "relaxedboundaryfmeasure": "relax_boundary_fmeasure",
    "sm": "smeasure",
    "salpha": "smeasure",
    "smeasure": "smeasure",
    "em": "mean_emeasure",
    "ephi": "mean_emeasure",
    "meanem": "mean_emeasure",
    "maxem": "max_emeasure",
    "accuracy": "pixel_accuracy",
    "pixelaccuracy": "pixel_accuracy",
}


def _normalise_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _metric_key(name: str) -> str:
    normalised = _normalise_name(name)
    for key, (label, _) in _LABELS.items():
        if normalised in (_normalise_name(key), _normalise_name(label)):
            return key
    return _ALIASES.get(normalised, name)


def _format_number(value) -> str:
    if value is None:
        return "—"
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def format_table(
    results: Mapping, reference: Mapping | None = None, source: str | None = None
) -> str:
    """A markdown table of ``results`` (from ``evaluate`` or an evaluator), with an optional
    column of published figures.

    ``reference`` maps metric names to numbers, e.g. ``{"MAE": 0.042}``; names may be the
    result keys (``"mae"``), the table labels or common spellings (``"mIoU"``, ``"maxF"``).
    A ``"source"`` entry in it, or ``source=``, is printed under the table.
    """
    reference = dict(reference or {})
    source = source or reference.pop("source", None)
    reference = {_metric_key(name): value for name, value in reference.items()}

    rows = []
    for key, (label, lower_is_better) in _LABELS.items():
        if key in results or key in reference:
            arrow = " ↓" if lower_is_better else " ↑"
            rows.append((label + arrow, results.get(key), reference.get(key)))
    names = results.get("class_names")
    for index, value in enumerate(results.get("per_class_iou", ())):
        name = names[index] if names else f"class {index}"
        rows.append((f"IoU {name}", value, None))
    for key, value in reference.items():
        if key not in _LABELS:
            rows.append((key, results.get(key), value))

    header = ["metric", "value"] + (["reference"] if reference else [])
    lines = []
    if "task" in results or "num_images" in results:
        about = [str(results[k]) for k in ("task",) if k in results]
        if "num_images" in results:
            about.append(f"{results['num_images']} images")
        lines.append("Evaluation: " + ", ".join(about))
        lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| --- | " + " | ".join(["---:"] * (len(header) - 1)) + " |")
    for label, value, ref in rows:
        cells = [label, _format_number(value)]
        if reference:
            cells.append(_format_number(ref) if ref is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    if source:
        lines.append("")
        lines.append(f"Reference: {source}")
    return "\n".join(lines)
