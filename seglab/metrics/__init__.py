"""Training metrics (keras.ops, any backend) and evaluation (numpy + py_sod_metrics).

Importing this package imports neither TensorFlow nor matplotlib.
"""

from seglab.metrics.confusion import ConfusionMatrix
from seglab.metrics.evaluation import evaluate, format_table
from seglab.metrics.salient import (
    RelaxedBoundaryFmeasure,
    SODEvaluator,
    relaxed_boundary_precision_recall,
)
from seglab.metrics.training import BinaryMeanIoU, BinaryPixelAccuracy, segmentation_metrics

__all__ = [
    "BinaryMeanIoU",
    "BinaryPixelAccuracy",
    "segmentation_metrics",
    "SODEvaluator",
    "RelaxedBoundaryFmeasure",
    "relaxed_boundary_precision_recall",
    "ConfusionMatrix",
    "evaluate",
    "format_table",
]
