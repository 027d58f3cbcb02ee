"""BASNet's hybrid loss: binary cross-entropy + (1 - SSIM) + (1 - soft IoU).

Qin et al., "BASNet: Boundary-Aware Salient Object Detection", CVPR 2019: the three terms
supervise at pixel, patch and map level. The loss applies to ONE output; BASNet's deep
supervision sums it over its 8 outputs by compiling with ``loss=[BASNetHybridLoss()] * 8``
and a dataset whose target is repeated 8 times (``make_dataset(..., num_outputs=8)``).
"""

import keras
from keras import ops

from seglab.losses.ssim import ssim


def soft_iou(y_true, y_pred, smooth=1e-6):
    """Soft intersection over union of probability maps, one value per image ``(B,)``."""
    axes = tuple(range(1, len(y_true.shape)))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    union = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes) - intersection
    return (intersection + smooth) / (union + smooth)


@keras.saving.register_keras_serializable(package="seglab")
class BASNetHybridLoss(keras.losses.Loss):
    """BCE + (1 - SSIM) + (1 - IoU) between a mask and one map of probabilities.

    Args:
        smooth: added to the IoU's numerator and denominator, so that an empty mask
            predicted empty scores IoU 1.
        ssim_filter_size: side of SSIM's Gaussian window (images must be at least this big).
        name, reduction, dtype: as for ``keras.losses.Loss``.

    ``y_true`` and ``y_pred`` are ``(B, H, W, C)`` in ``[0, 1]``; ``call`` returns the
    per-image loss ``(B,)``, which the default reduction averages over the batch.
    """

    def __init__(
        self,
        smooth=1e-6,
        ssim_filter_size=11,
        name="basnet_hybrid_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smooth = smooth
        self.ssim_filter_size = ssim_filter_size

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        pixel_bce = keras.losses.binary_crossentropy(y_true, y_pred)  # (B, H, W)
        bce = ops.mean(ops.reshape(pixel_bce, (ops.shape(pixel_bce)[0], -1)), axis=1)
        ssim_loss = 1.0 - ssim(y_true, y_pred, max_val=1.0, filter_size=self.ssim_filter_size)
        iou_loss = 1.0 - soft_iou(y_true, y_pred, self.smooth)
        return bce + ssim_loss + iou_loss

    def get_config(self):
        return {
            **super().get_config(),
            "dtype": self.dtype,
            "smooth": self.smooth,
            "ssim_filter_size": self.ssim_filter_size,
        }
