"""Segmentation models, one constructor per architecture with the backbone as an argument.

Every constructor returns a ``keras.Model``; output 0 is the prediction to use (the others,
where present, are side outputs for deep supervision). Only ``keras`` is used here, so the
models run on any Keras 3 backend.
"""

from seglab.models.basnet import basnet
from seglab.models.blocks import ResizeLike
from seglab.models.deeplabv3plus import deeplabv3plus
from seglab.models.u2net import RSU, ConvBNReLU, u2net, u2netp
from seglab.models.unet import unet

__all__ = ["RSU", "ConvBNReLU", "ResizeLike", "basnet", "deeplabv3plus", "u2net", "u2netp", "unet"]
