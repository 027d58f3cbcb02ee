"""Evaluation after training: run a model over a dataset and score it, then print a table.

- ``evaluate(model, dataset)``: runs a model over a dataset and feeds the right evaluator:
  ``SODEvaluator`` (``seglab.metrics.salient``) for salient-object maps, ``ConfusionMatrix``
  (``seglab.metrics.confusion``) for class-id maps;
- ``format_table(results, reference)``: a markdown table, optionally beside a published figure.

numpy only (plus py_sod_metrics and scipy, imported when first used): no TensorFlow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from seglab.metrics.confusion import ConfusionMatrix
from seglab.metrics.salient import (
    RelaxedBoundaryFmeasure,
    SODEvaluator,
    relaxed_boundary_precision_recall,
)

__all__ = [
    "SODEvaluator",
    "RelaxedBoundaryFmeasure",
    "relaxed_boundary_precision_recall",
    "ConfusionMatrix",
    "evaluate",
    "format_table",
]

TASKS = ("salient", "multiclass")


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
        if targets.ndim == 4 and targets.shape[-1] == 1:
            targets = targets[..., 0]
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
