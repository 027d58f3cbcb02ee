"""DeepLabV3+ (ResNet50 encoder, atrous spatial pyramid pooling)."""

from seglab.models.deeplabv3plus.deeplabv3plus import deeplabv3plus

__all__ = ["deeplabv3plus"]
