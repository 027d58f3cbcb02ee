"""U²-Net and the small U²-NetP (Qin et al., Pattern Recognition 2020), with two heads.

Both are a U-Net of RSU blocks: six encoder stages (RSU-7, 6, 5, 4, 4F, 4F) separated by 2×2
max-pools in ceil mode, five decoder stages that take (upsampled deeper stage, skip), six side
outputs upsampled to the input size, and a 1×1 convolution that fuses them.

Heads:

- ``"salient"`` (the paper): 3×3 side convolutions and a sigmoid on the fused map and on every
  side map. Train with binary cross-entropy on each of the seven outputs.
- ``"multiclass"`` (the PaddleSeg adaptation): 1×1 side convolutions, ``num_classes`` logits
  and no activation. Train with sparse categorical cross-entropy from logits on each output.

The outputs are a list: the fused map (``"fused"``), then the side maps ``"side1"`` … ``"side6"``
(d1 … d6 in the paper, d1 the finest). All are float32, also under mixed precision.
"""

import keras
from keras import layers

from seglab.models.blocks import ResizeLike
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input
from seglab.models.u2net.rsu import RSU
from seglab.models.weights import weights_loader

HEADS = ("salient", "multiclass")
OUTPUT_NAMES = ("fused", "side1", "side2", "side3", "side4", "side5", "side6")

# (height, mid_channels, out_channels, dilated) of the six encoder stages and of the five
# decoder stages stage5d … stage1d, as in the official models.
_U2NET_ENCODER = [
    (7, 32, 64, False),
    (6, 32, 128, False),
    (5, 64, 256, False),
    (4, 128, 512, False),
    (4, 256, 512, True),
    (4, 256, 512, True),
]
_U2NET_DECODER = [
    (4, 256, 512, True),
    (4, 128, 256, False),
    (5, 64, 128, False),
    (6, 32, 64, False),
    (7, 16, 64, False),
]
_U2NETP_ENCODER = [
    (7, 16, 64, False),
    (6, 16, 64, False),
    (5, 16, 64, False),
    (4, 16, 64, False),
    (4, 16, 64, True),
    (4, 16, 64, True),
]
_U2NETP_DECODER = [
    (4, 16, 64, True),
    (4, 16, 64, False),
    (5, 16, 64, False),
    (6, 16, 64, False),
    (7, 16, 64, False),
]


def _check_arguments(num_classes, input_shape, head):
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if head == "multiclass" and num_classes < 2:
        raise ValueError(
            f"head='multiclass' needs num_classes >= 2 (the background is a class), got "
            f"{num_classes}; for one foreground class against the background use head='salient'"
        )
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"input_shape must be (height, width, channels) with known channels, e.g. "
            f"(320, 320, 3) or (None, None, 3); got {input_shape!r}"
        )


def _build(name, encoder, decoder, num_classes, input_shape, head, weights, normalization):
    _check_arguments(num_classes, input_shape, head)
    load_weights = weights_loader(weights, _WEIGHT_CONVERTERS)
    if normalization == "auto":
        normalization = "u2net_official" if _is_official_checkpoint(weights) else "unit"
    inputs, x = image_input(input_shape, normalization)

    # Encoder: stage1 … stage6, pooled between stages.
    encoder_features = []
    for index, (height, mid, out, dilated) in enumerate(encoder, start=1):
        if index > 1:
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{index - 1}{index}")(x)
        x = RSU(height, mid, out, dilated, name=f"stage{index}")(x)
        encoder_features.append(x)

    # Decoder: stage5d … stage1d; each takes (deeper stage upsampled to the skip, skip).
    side_features = [encoder_features[-1]]  # stage6 feeds side6
    for index, (height, mid, out, dilated) in zip(range(len(decoder), 0, -1), decoder, strict=True):
        skip = encoder_features[index - 1]
        x = ResizeLike(name=f"stage{index + 1}{'' if index == 5 else 'd'}_up")([x, skip])
        x = layers.Concatenate(name=f"stage{index}d_concat")([x, skip])
        x = RSU(height, mid, out, dilated, name=f"stage{index}d")(x)
        side_features.append(x)
    side_features.reverse()  # stage1d, stage2d, …, stage5d, stage6

    kernel_size = 3 if head == "salient" else 1
    side_logits = []
    for index, feature in enumerate(side_features, start=1):
        logits = layers.Conv2D(num_classes, kernel_size, padding="same", name=f"side{index}_conv")(
            feature
        )
        if index > 1:
            logits = ResizeLike(name=f"side{index}_up")([logits, side_logits[0]])
        side_logits.append(logits)
    fused_logits = layers.Conv2D(num_classes, 1, name="fuse_conv")(
        layers.Concatenate(name="side_concat")(side_logits)
    )

    # Float32 outputs so losses stay in float32 under mixed precision.
    activation = "sigmoid" if head == "salient" else "linear"
    outputs = [
        SegmentationOutput(activation, prediction=index == 0, name=output_name)(logits)
        for index, (output_name, logits) in enumerate(
            zip(OUTPUT_NAMES, [fused_logits, *side_logits], strict=True)
        )
    ]
    model = keras.Model(inputs, outputs, name=name)
    return load_weights(model)


def _is_official_checkpoint(weights):
    if weights is None:
        return False
    from seglab.models.u2net.checkpoint import is_torch_checkpoint

    return is_torch_checkpoint(weights)


def _load_official_checkpoint(model, path):
    from seglab.models.u2net.checkpoint import load_official_weights

    load_official_weights(model, path)


# weights= values besides model files: the authors' PyTorch checkpoints (u2net.pth, u2netp.pth).
_WEIGHT_CONVERTERS = {
    "official .pth checkpoint": (_is_official_checkpoint, _load_official_checkpoint)
}


def u2net(
    num_classes=1, input_shape=(320, 320, 3), head="salient", weights=None, normalization="auto"
):
    """U²-Net (44.0 M parameters with one output channel).

    Args:
        num_classes: output channels: 1 for salient-object detection; the number of classes
            (background included) for ``head="multiclass"``.
        input_shape: ``(height, width, channels)``; any size works, also ``(None, None, 3)``.
        head: ``"salient"`` (sigmoid probabilities, 3×3 side convs) or ``"multiclass"``
            (logits, 1×1 side convs).
        weights: ``None``; a ``.keras`` / ``.weights.h5`` file of the same model; or the
            authors' PyTorch checkpoint (``u2net.pth`` for ``u2net``, ``u2netp.pth`` for
            ``u2netp``), read without PyTorch (``seglab.models.u2net.checkpoint``). With a
            multi-class head, a salient checkpoint initialises everything but the heads.
        normalization: how the model scales its 0..255 RGB input: ``"auto"`` (default) is
            ``"u2net_official"`` (the official test script's: divide by the image maximum,
            then ImageNet mean/std) when ``weights`` is an official checkpoint, else
            ``"unit"`` ([0, 1]); any mode of ``seglab.models.preprocessing``, or ``None``.

    Returns:
        A ``keras.Model`` whose outputs are ``[fused, side1, …, side6]``, each
        ``(B, H, W, num_classes)`` float32.
    """
    return _build(
        "u2net",
        _U2NET_ENCODER,
        _U2NET_DECODER,
        num_classes,
        input_shape,
        head,
        weights,
        normalization,
    )


def u2netp(
    num_classes=1, input_shape=(320, 320, 3), head="salient", weights=None, normalization="auto"
):
    """U²-NetP, the small U²-Net (1.13 M parameters with one output channel).

    Same arguments and outputs as :func:`u2net`.
    """
    return _build(
        "u2netp",
        _U2NETP_ENCODER,
        _U2NETP_DECODER,
        num_classes,
        input_shape,
        head,
        weights,
        normalization,
    )
