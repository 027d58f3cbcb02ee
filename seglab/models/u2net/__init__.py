"""U²-Net and U²-NetP with a salient-object head or a multi-class head."""

from seglab.models.u2net.rsu import RSU, ConvBNReLU
from seglab.models.u2net.u2net import HEADS, OUTPUT_NAMES, u2net, u2netp

__all__ = ["HEADS", "OUTPUT_NAMES", "RSU", "ConvBNReLU", "u2net", "u2netp"]
