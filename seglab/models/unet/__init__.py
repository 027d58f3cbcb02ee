"""U-Net (MobileNetV2 encoder, pix2pix decoder)."""

from seglab.models.unet.unet import unet

__all__ = ["unet"]
