"""Losses in ``keras.ops`` (any Keras 3 backend).

Deep supervision is explicit: compile with one loss per output (``deep_supervision_loss``)
and a dataset whose target is repeated per output (``make_dataset(num_outputs=...)``).
Multi-class losses with per-pixel sample weights are Keras' own
``keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)``, which
honours them and leaves the pixels of the dataset's ``ignore_label`` (255 by default) out of
the mean.
"""

from seglab.losses.basnet import BASNetHybridLoss, soft_iou
from seglab.losses.ssim import gaussian_window, ssim
from seglab.losses.u2net import deep_supervision_loss, u2net_loss

__all__ = [
    "BASNetHybridLoss",
    "deep_supervision_loss",
    "gaussian_window",
    "soft_iou",
    "ssim",
    "u2net_loss",
]
