"""Metrics for ``model.compile``: Keras' own where they fit, two small additions where not.

Keras already covers most of the multi-class case: ``keras.metrics.MeanIoU(num_classes,
sparse_y_pred=False, ignore_class=255)`` argmaxes the logits (or probabilities) and leaves out
the pixels of the ignore label, and ``keras.metrics.MeanAbsoluteError`` is the saliency MAE.
``keras.metrics.SparseCategoricalAccuracy`` has no ignore label: ``SparsePixelAccuracy`` adds it.

What Keras lacks is the one-channel case with *soft* targets: saliency masks resized
bilinearly hold values between 0 and 1, and ``keras.metrics.BinaryIoU`` casts them to int
(0.7 becomes 0) while ``keras.metrics.BinaryAccuracy`` compares them for equality with the
thresholded prediction. ``BinaryMeanIoU`` and ``BinaryPixelAccuracy`` threshold the target at
``target_threshold`` as well, and accept logits (``from_logits=True``).

keras.ops only: these run under every Keras backend.
"""

import keras
from keras import ops

__all__ = ["BinaryMeanIoU", "BinaryPixelAccuracy", "SparsePixelAccuracy", "segmentation_metrics"]

# seglab.data's default ignore_label (PaddleSeg's ignore_index), restated so that the metrics
# stay independent of the data package.
DEFAULT_IGNORE_LABEL = 255


def _binarize(y_true, y_pred, target_threshold, from_logits):
    """Targets to {0, 1} at ``target_threshold``; logits to probabilities."""
    y_true = ops.convert_to_tensor(y_true)
    y_true = ops.cast(ops.greater_equal(ops.cast(y_true, "float32"), target_threshold), "int32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if from_logits:
        y_pred = ops.sigmoid(y_pred)
    return y_true, y_pred


@keras.saving.register_keras_serializable(package="seglab")
class BinaryMeanIoU(keras.metrics.BinaryIoU):
    """IoU of a one-channel map (probabilities or logits) against hard or soft targets.

    The prediction is foreground where ``probability >= threshold`` (after a sigmoid when
    ``from_logits``); the target where ``target >= target_threshold``. With the default
    ``target_class_ids=(0, 1)`` the result is the mean of the background and foreground IoU,
    as ``keras.metrics.MeanIoU`` gives for a two-class model; ``(1,)`` gives the foreground
    IoU alone. Classes absent from both target and prediction are left out of the mean.

    Sample weights are ignored by ``compile(metrics=...)`` (Keras passes them only to
    ``weighted_metrics``), and would be cast to int by the confusion matrix.
    """

    def __init__(
        self,
        threshold=0.5,
        from_logits=False,
        target_threshold=0.5,
        target_class_ids=(0, 1),
        name="mean_iou",
        dtype=None,
    ):
        super().__init__(
            target_class_ids=target_class_ids, threshold=threshold, name=name, dtype=dtype
        )
        self.from_logits = from_logits
        self.target_threshold = target_threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _binarize(y_true, y_pred, self.target_threshold, self.from_logits)
        return super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "target_threshold": self.target_threshold,
        }


@keras.saving.register_keras_serializable(package="seglab")
class BinaryPixelAccuracy(keras.metrics.BinaryAccuracy):
    """Fraction of pixels whose thresholded one-channel prediction equals the thresholded target.

    Like ``keras.metrics.BinaryAccuracy`` but soft targets are thresholded at
    ``target_threshold`` instead of compared for equality, logits are accepted, and a
    probability equal to ``threshold`` counts as foreground, as in ``BinaryMeanIoU``
    (Keras' ``BinaryAccuracy`` uses ``>``, its ``BinaryIoU`` ``>=``).
    """

    def __init__(
        self,
        threshold=0.5,
        from_logits=False,
        target_threshold=0.5,
        name="pixel_accuracy",
        dtype=None,
    ):
        # The prediction arrives here already in {0, 1}; the parent compares it with 0.5.
        super().__init__(name=name, dtype=dtype, threshold=0.5)
        self.threshold = threshold
        self.from_logits = from_logits
        self.target_threshold = target_threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _binarize(y_true, y_pred, self.target_threshold, self.from_logits)
        y_pred = ops.cast(ops.greater_equal(y_pred, self.threshold), "float32")
        return super().update_state(ops.cast(y_true, "float32"), y_pred, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "target_threshold": self.target_threshold,
        }


@keras.saving.register_keras_serializable(package="seglab")
class SparsePixelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Fraction of pixels whose argmaxed prediction equals the class id, pixels labelled
    ``ignore_class`` left out.

    ``keras.metrics.SparseCategoricalAccuracy`` counts those pixels as wrong. Here they get
    sample weight 0 (times any sample weight given), like ``ignore_class`` in
    ``keras.metrics.MeanIoU`` and ``keras.losses.SparseCategoricalCrossentropy``. A batch made
    only of ignored pixels leaves the accuracy as it was.
    """

    def __init__(self, ignore_class=None, name="pixel_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_class = ignore_class

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.ignore_class is not None:
            y_true = ops.convert_to_tensor(y_true)
            valid = ops.not_equal(y_true, ops.cast(self.ignore_class, y_true.dtype))
            if len(y_true.shape) == len(y_pred.shape):  # (B, H, W, 1) targets
                valid = ops.squeeze(valid, -1)
            valid = ops.cast(valid, self.dtype)
            if sample_weight is not None:
                sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), self.dtype)
                if len(sample_weight.shape) == len(valid.shape) + 1:
                    sample_weight = ops.squeeze(sample_weight, -1)
                valid = valid * sample_weight
            sample_weight = valid
        return super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


def segmentation_metrics(
    num_classes,
    from_logits=None,
    threshold=0.5,
    num_outputs=1,
    ignore_label=DEFAULT_IGNORE_LABEL,
):
    """The metrics the course compiles with, named alike for every model.

    Args:
        num_classes: channels of the prediction. ``1``: a one-channel map (saliency or
            binary); more: class logits or probabilities, argmaxed.
        from_logits: only for ``num_classes == 1``; the salient-object models output
            probabilities, so the default is ``False``. MAE is left out for logits, where
            it means nothing.
        threshold: probability threshold for the one-channel metrics.
        num_outputs: the model's number of outputs (deep supervision). The metrics watch
            output 0 only; the other outputs get none.
        ignore_label: for ``num_classes > 1``, the target value of pixels that count in
            neither metric (the dataset's ``ignore_label``, 255 by default as in PaddleSeg);
            ``None`` for none. One-channel (saliency) targets have no ignored pixels.

    Returns:
        For one output, a list: ``pixel_accuracy``, ``mean_iou`` (and ``mae`` for
        one-channel probabilities). For several, ``[that list, None, None, ...]`` as
        ``compile(metrics=...)`` expects for a model returning a list.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be at least 1, got {num_outputs}")
    if num_classes == 1:
        from_logits = bool(from_logits)
        metrics = [
            BinaryPixelAccuracy(threshold=threshold, from_logits=from_logits),
            BinaryMeanIoU(threshold=threshold, from_logits=from_logits),
        ]
        if not from_logits:
            metrics.append(keras.metrics.MeanAbsoluteError(name="mae"))
    else:
        metrics = [
            SparsePixelAccuracy(ignore_class=ignore_label, name="pixel_accuracy"),
            keras.metrics.MeanIoU(
                num_classes=num_classes,
                sparse_y_pred=False,
                ignore_class=ignore_label,
                name="mean_iou",
            ),
        ]
    if num_outputs == 1:
        return metrics
    return [metrics] + [None] * (num_outputs - 1)
