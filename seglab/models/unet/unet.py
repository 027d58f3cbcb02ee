"""U-Net with a MobileNetV2 encoder: the TensorFlow pet-segmentation tutorial's model.

Rewritten with keras.applications and keras.layers only (no ``tensorflow_examples``): the
decoder blocks are pix2pix's ``upsample(filters, 3)`` with batch normalisation.
"""

import warnings

import keras
from keras import layers

from seglab.models.backbones import backbone_key, build_backbone, check_input_shape
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input
from seglab.models.weights import weights_loader

# Encoder outputs used as skip connections, finest first; the last one feeds the decoder.
# Sizes for a 128x128 input: 64, 32, 16, 8, 4.
SKIP_LAYERS = {
    "mobilenetv2": (
        "block_1_expand_relu",
        "block_3_expand_relu",
        "block_6_expand_relu",
        "block_13_expand_relu",
        "block_16_project",
    ),
}
DECODER_FILTERS = (512, 256, 128, 64)
# Moving-statistics momentum for a backbone trained from scratch (see ``unet``).
FROM_SCRATCH_BN_MOMENTUM = 0.9


def _encoder(key, input_shape, weights, bn_momentum, alpha):
    base = build_backbone(key, input_shape=input_shape, weights=weights, alpha=alpha)
    outputs = [base.get_layer(name).output for name in SKIP_LAYERS[key]]
    encoder = keras.Model(base.input, outputs, name=f"{key}_encoder")
    if bn_momentum is not None:
        for layer in encoder.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    return encoder


def _upsample_block(x, filters, dropout, name):
    """pix2pix.upsample(filters, 3): transposed conv (stride 2), batch norm, dropout, ReLU."""
    x = layers.Conv2DTranspose(
        filters,
        3,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.02),
        name=f"{name}_upconv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def unet(
    num_classes=3,
    input_shape=(128, 128, 3),
    backbone="mobilenetv2",
    encoder_weights="imagenet",
    encoder_trainable=None,
    weights=None,
    normalization="mobilenet",
    dropout=0.0,
    backbone_bn_momentum=None,
    alpha=1.0,
    decoder_filters=DECODER_FILTERS,
    name="unet",
):
    """U-Net with a keras.applications encoder, returning per-pixel logits ``(B, H, W, C)``.

    The encoder's activations at five depths (strides 2 to 32) are the skip connections; four
    upsampling blocks of 512/256/128/64 filters each double the size and are concatenated
    with the skip of that size; a last stride-2 transposed convolution gives ``num_classes``
    logits at the input size (in float32, so the model works under mixed precision).

    Args:
        num_classes: number of output channels (classes); use
            ``SparseCategoricalCrossentropy(from_logits=True)``.
        input_shape: ``(height, width, channels)``; height and width must be multiples of 32
            (or ``None`` for a free size, which must then be a multiple of 32 at call time).
        backbone: ``"mobilenetv2"``.
        encoder_weights: ``"imagenet"``, ``None`` (random initialisation) or the path of a
            weights file for the backbone.
        encoder_trainable: ``None`` (default) freezes a pretrained encoder, as the tutorial
            does, and trains an encoder with ``encoder_weights=None`` (frozen random features
            are of no use). ``True`` fine-tunes a pretrained encoder. ``False`` with
            ``encoder_weights=None`` is honoured but warns.
        weights: ``None``, or a ``.keras`` / ``.weights.h5`` file of a trained U-Net of the
            same configuration to start from.
        normalization: how the model scales its 0..255 RGB input (``"mobilenet"``: [-1, 1],
            the range ImageNet MobileNetV2 was trained on; see
            ``seglab.models.preprocessing``); ``None`` feeds the input to the encoder as is.
        dropout: dropout rate in the decoder blocks (pix2pix uses 0.5 when enabled).
        backbone_bn_momentum: momentum of the encoder's BatchNormalization moving statistics.
            ``None`` (default) keeps the value ``keras.applications.MobileNetV2`` sets (0.999)
            for pretrained weights and uses 0.9 with ``encoder_weights=None``: at 0.999 the moving statistics of a backbone trained from
            scratch are still close to their initial values after hundreds of steps, and
            inference-mode predictions collapse to a single class.
        alpha: MobileNetV2's width multiplier (1.0: the tutorial's encoder; 0.35 has about a
            sixth of its weights).
        decoder_filters: filters of the four upsampling blocks, coarsest first (the
            tutorial's 512/256/128/64 by default).
        name: model name.

    Returns:
        A ``keras.Model`` mapping 0..255 RGB images to logits ``(B, H, W, num_classes)``.
    """
    key = backbone_key(backbone, supported=tuple(SKIP_LAYERS))
    input_shape = check_input_shape(input_shape, 32, "unet")
    if int(num_classes) < 1:
        raise ValueError(f"unet: num_classes must be at least 1; got {num_classes!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"unet: dropout must be in [0, 1); got {dropout!r}.")
    decoder_filters = tuple(int(filters) for filters in decoder_filters)
    if len(decoder_filters) != len(DECODER_FILTERS) or min(decoder_filters) < 1:
        raise ValueError(
            f"unet: decoder_filters must be {len(DECODER_FILTERS)} positive numbers (one per "
            f"upsampling block); got {decoder_filters!r}."
        )

    from_scratch = encoder_weights is None
    if encoder_trainable is None:
        encoder_trainable = from_scratch
    elif from_scratch and not encoder_trainable:
        warnings.warn(
            "unet: encoder_weights=None with encoder_trainable=False keeps a randomly initialised "
            "encoder frozen; its features will not be learned.",
            stacklevel=2,
        )
    if backbone_bn_momentum is None and from_scratch:
        backbone_bn_momentum = FROM_SCRATCH_BN_MOMENTUM

    load_weights = weights_loader(weights)
    encoder = _encoder(key, input_shape, encoder_weights, backbone_bn_momentum, alpha)
    # A frozen encoder also runs its BatchNormalization in inference mode (Keras 3 behaviour).
    encoder.trainable = bool(encoder_trainable)

    inputs, x = image_input(input_shape, normalization)
    skips = encoder(x)
    x = skips[-1]
    for index, (filters, skip) in enumerate(
        zip(decoder_filters, reversed(skips[:-1]), strict=True), start=1
    ):
        x = _upsample_block(x, filters, dropout, name=f"decoder{index}")
        x = layers.Concatenate(name=f"decoder{index}_concat")([x, skip])
    x = layers.Conv2DTranspose(num_classes, 3, strides=2, padding="same", name="logits_conv")(x)
    logits = SegmentationOutput("linear", name="logits")(x)
    return load_weights(keras.Model(inputs, logits, name=name))
