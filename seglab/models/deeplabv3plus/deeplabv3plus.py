"""DeepLabV3+ with a ResNet50 encoder: the Keras CIHP human-parsing example's model.

Atrous (dilated) spatial pyramid pooling on ResNet50's ``conv4_block6_2_relu`` (stride 16),
a decoder that upsamples it 4x and fuses it with ``conv2_block3_2_relu`` (stride 4) features,
then bilinear upsampling to the input size and a 1x1 classifier. Resizes follow the tensors'
shapes (``ResizeLike``), so any input size that is a multiple of 16 works.
"""

import keras
from keras import layers

from seglab.models.backbones import backbone_key, build_backbone, check_input_shape
from seglab.models.blocks import ResizeLike
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input
from seglab.models.weights import weights_loader

# (deep features for the pyramid pooling, low-level features for the decoder), per backbone.
FEATURE_LAYERS = {"resnet50": ("conv4_block6_2_relu", "conv2_block3_2_relu")}
ASPP_DILATION_RATES = (6, 12, 18)


def _conv_block(x, name, filters=256, kernel_size=3, dilation_rate=1, use_bias=False):
    """Conv2D (He normal) + BatchNormalization + ReLU."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=keras.initializers.HeNormal(),
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _dilated_spatial_pyramid_pooling(features):
    # Image-level branch: average over the whole map, 1x1 conv, back to the map's size.
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(features)
    pooled = _conv_block(pooled, "aspp_pool", kernel_size=1, use_bias=True)
    pooled = ResizeLike(name="aspp_pool_upsample")([pooled, features])

    branches = [pooled, _conv_block(features, "aspp_1x1", kernel_size=1)]
    for rate in ASPP_DILATION_RATES:
        branches.append(_conv_block(features, f"aspp_rate{rate}", dilation_rate=rate))
    x = layers.Concatenate(name="aspp_concat")(branches)
    return _conv_block(x, "aspp_fuse", kernel_size=1)


def deeplabv3plus(
    num_classes=20,
    input_shape=(512, 512, 3),
    backbone="resnet50",
    encoder_weights="imagenet",
    encoder_trainable=True,
    weights=None,
    normalization="resnet",
    name="deeplabv3plus",
):
    """DeepLabV3+ returning per-pixel logits ``(B, H, W, num_classes)`` (float32).

    At 512x512x3 with 20 classes the model has 11,857,236 parameters, as in the Keras example.

    Args:
        num_classes: number of classes; use ``SparseCategoricalCrossentropy(from_logits=True)``.
        input_shape: ``(height, width, channels)``; height and width must be multiples of 16
            (or ``None`` for a free size, a multiple of 16 at call time).
        backbone: ``"resnet50"``.
        encoder_weights: ``"imagenet"``, ``None`` (random initialisation) or the path of a
            weights file for the backbone.
        encoder_trainable: train the backbone with the rest (the Keras example does).
        weights: ``None``, or a ``.keras`` / ``.weights.h5`` file of a trained DeepLabV3+ of
            the same configuration.
        normalization: how the model scales its 0..255 RGB input; ``"resnet"`` is
            ``keras.applications.resnet50.preprocess_input``, what the ImageNet ResNet50
            expects (see ``seglab.models.preprocessing``).
        name: model name.
    """
    key = backbone_key(backbone, supported=tuple(FEATURE_LAYERS))
    input_shape = check_input_shape(input_shape, 16, "deeplabv3plus")
    if int(num_classes) < 1:
        raise ValueError(f"deeplabv3plus: num_classes must be at least 1; got {num_classes!r}.")

    load_weights = weights_loader(weights)
    base = build_backbone(key, input_shape=input_shape, weights=encoder_weights)
    deep_name, low_level_name = FEATURE_LAYERS[key]
    encoder = keras.Model(
        base.input,
        [base.get_layer(deep_name).output, base.get_layer(low_level_name).output],
        name=f"{key}_encoder",
    )
    encoder.trainable = bool(encoder_trainable)

    inputs, x = image_input(input_shape, normalization)
    deep, low_level = encoder(x)
    x = _dilated_spatial_pyramid_pooling(deep)
    x = ResizeLike(name="decoder_upsample")([x, low_level])  # stride 16 -> 4
    low_level = _conv_block(low_level, "decoder_low_level", filters=48, kernel_size=1)
    x = layers.Concatenate(name="decoder_concat")([x, low_level])
    x = _conv_block(x, "decoder_conv1")
    x = _conv_block(x, "decoder_conv2")
    x = ResizeLike(name="upsample_to_input")([x, inputs])
    x = layers.Conv2D(num_classes, 1, padding="same", name="logits_conv")(x)
    logits = SegmentationOutput("linear", name="logits")(x)
    return load_weights(keras.Model(inputs, logits, name=name))
