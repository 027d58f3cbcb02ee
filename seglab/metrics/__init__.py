"""Training metrics (keras.ops, any backend) and evaluation (numpy + py_sod_metrics).

Importing this package imports neither TensorFlow nor matplotlib.
"""

from seglab.metrics.evaluation import ConfusionMatrix, SODEvaluator, evaluate, format_table
from seglab.metrics.training import BinaryMeanIoU, BinaryPixelAccuracy, segmentation_metrics

__all__ = [
    "BinaryMeanIoU",
    "BinaryPixelAccuracy",
    "segmentation_metrics",
    "SODEvaluator",
    "ConfusionMatrix",
    "evaluate",
    "format_table",
]
