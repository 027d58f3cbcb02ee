"""U²-Net and U²-NetP with a salient-object head or a multi-class head.

``seglab.models.u2net.checkpoint`` loads the authors' PyTorch checkpoints (``u2net.pth``,
``u2netp.pth``) without PyTorch; ``u2net(weights="u2net.pth")`` uses it.
"""

from seglab.models.u2net.checkpoint import (
    is_torch_checkpoint,
    load_official_weights,
    read_torch_checkpoint,
)
from seglab.models.u2net.rsu import RSU, ConvBNReLU
from seglab.models.u2net.u2net import HEADS, OUTPUT_NAMES, u2net, u2netp

__all__ = [
    "HEADS",
    "OUTPUT_NAMES",
    "RSU",
    "ConvBNReLU",
    "is_torch_checkpoint",
    "load_official_weights",
    "read_torch_checkpoint",
    "u2net",
    "u2netp",
]
