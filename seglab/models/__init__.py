"""Segmentation models, one constructor per architecture with the backbone as an argument.

Every constructor returns a ``keras.Model`` that takes RGB images with values 0..255 and
normalises them itself (``seglab.models.preprocessing``). Its outputs declare what they are
(``output_info(model)``: logits or probabilities, which output is the prediction); output 0
is the prediction to use, the others, where present, are side outputs for deep supervision.
Only ``keras`` is used here, so the models run on any Keras 3 backend.

Weights, in every constructor: ``encoder_weights`` (``"imagenet"``, ``None`` or a file) for
the backbone, and ``weights`` for a whole trained model (see ``seglab.models.weights``).
"""

from seglab.models.basnet import basnet
from seglab.models.blocks import ResizeLike
from seglab.models.deeplabv3plus import deeplabv3plus
from seglab.models.heads import (
    OutputInfo,
    SegmentationOutput,
    output_info,
    prediction_output,
    to_probabilities,
)
from seglab.models.preprocessing import NORMALIZATIONS, ImagePreprocessing, preprocessing_of
from seglab.models.u2net import RSU, ConvBNReLU, u2net, u2netp
from seglab.models.unet import unet

__all__ = [
    "NORMALIZATIONS",
    "RSU",
    "ConvBNReLU",
    "ImagePreprocessing",
    "OutputInfo",
    "ResizeLike",
    "SegmentationOutput",
    "basnet",
    "deeplabv3plus",
    "output_info",
    "prediction_output",
    "preprocessing_of",
    "to_probabilities",
    "u2net",
    "u2netp",
    "unet",
]
