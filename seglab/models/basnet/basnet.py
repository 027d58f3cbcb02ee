"""BASNet: a boundary-aware predict-and-refine network for salient object segmentation.

Qin et al., "BASNet: Boundary-Aware Salient Object Detection", CVPR 2019. The layer layout
follows the keras.io example "Highly accurate boundaries segmentation using BASNet" (Hamid
Ali), whose model has 108,886,792 parameters at 288x288x3 with one class:

- predict module: a 3x3 conv at full resolution, the four stages of a ResNet-34 (or -18)
  without its stem conv and pooling, built by ``own_resnet_stage`` with keras-hub's layer
  names so a keras-hub preset loads into them (each followed by a ReLU), two more
  stages of max-pool + three basic residual blocks, a dilated bridge, six decoder stages and
  seven side outputs resized to the input size;
- residual refinement module: a light encoder-decoder on the coarse map (side output 1)
  whose output is added to it.

Like the keras.io example (and unlike the original PyTorch code) the input conv has no
BatchNorm, and each ResNet stage's skip connection is taken before the stage's last ReLU.
"""

import os

import keras
from keras import layers

from seglab.models.backbones import WeightsDownloadError, check_input_shape
from seglab.models.blocks import ResizeLike
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input
from seglab.models.weights import weights_loader

# Basic blocks per stage of the ResNets whose stages the encoder reuses.
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
# keras-hub ships ImageNet weights for ResNet-18 only among the basic-block, non-vd ResNets.
IMAGENET_PRESETS = {"resnet18": "resnet_18_imagenet"}
# PyTorch's BatchNorm defaults, as in the original BASNet and keras-hub's ResNet.
BN_ARGS = {"epsilon": 1e-5, "momentum": 0.9}
# Output 0 is the prediction to use; the side maps exist for deep supervision.
OUTPUT_NAMES = ("refined", "side_1", "side_2", "side_3", "side_4", "side_5", "side_6", "side_7")


def basnet(
    num_classes=1,
    input_shape=(288, 288, 3),
    backbone="resnet34",
    encoder_weights=None,
    weights=None,
    normalization="unit",
    filters=64,
    stage_relu=None,
    name="basnet",
):
    """Builds BASNet; returns a ``keras.Model`` with 8 outputs of probabilities.

    Args:
        num_classes: channels of every output map (1 for salient objects).
        input_shape: ``(H, W, C)``; H and W must be multiples of 32 (or None).
        backbone: ``"resnet34"`` (the paper's) or ``"resnet18"``: whose four stages form the
            first encoder stages.
        encoder_weights: ``None`` (random), ``"imagenet"`` (keras-hub's ImageNet backbone
            preset, only for ``"resnet18"``), or a keras-hub preset name, handle or directory
            for the backbone.
        weights: ``None``, a ``.keras`` / ``.weights.h5`` file of a whole BASNet of the same
            configuration, or ``"basnet_duts"``: keras-hub's BASNet trained on DUTS, converted
            (downloaded once; see ``seglab.models.basnet.keras_hub_weights``).
        normalization: how the model scales its 0..255 RGB input (``"unit"``: [0, 1], as the
            keras.io example; see ``seglab.models.preprocessing``).
        filters: base width. 64 is the paper's model; every stage scales with it
            (``filters=16`` gives a small model for smoke tests). Every width builds its
            ResNet stages with ``own_resnet_stage`` (keras-hub's structure and layer names:
            keras-hub's ``ResNetBackbone`` only builds 64-wide first stages), so a smoke model
            runs the full model's code; a backbone preset (64 filters only) is copied in.
        stage_relu: apply a ReLU to each ResNet stage's residual sum before the next stage
            (as the keras.io example and the original BASNet do). keras-hub's
            ``BASNetBackbone`` has none there; ``None`` (default) follows keras-hub for its
            presets (``weights="basnet_duts"``, so the outputs equal keras-hub's) and is True
            otherwise.
        name: model name.

    Returns:
        A model whose outputs are, in order, the refined map (``"refined"``, the prediction
        to use) and the seven side maps of the predict module (``"side_1"`` at full
        resolution ... ``"side_7"`` from the bridge), each ``(B, H, W, num_classes)`` sigmoid
        probabilities in float32 (also under mixed precision).
    """
    _check_arguments(num_classes, input_shape, backbone, filters)
    preset = _resolve_encoder_weights(encoder_weights, backbone, filters)
    load_weights = weights_loader(weights, _WEIGHT_CONVERTERS)

    inputs, x = image_input(input_shape, normalization)
    # One builder for every width (smoke models run the full model's code); a keras-hub
    # backbone preset (64 filters only) is copied in by keras-hub's layer names, which the
    # stages share.
    resnet_stages = [
        own_resnet_stage(index, filters * 2**index, blocks, name=f"{backbone}_stage{index + 1}")
        for index, blocks in enumerate(RESNET_BLOCKS[backbone])
    ]
    if preset is not None:
        _copy_stage_weights(keras_hub_resnet_stages(backbone, preset), resnet_stages)
    if stage_relu is None:
        stage_relu = weights is None or not _is_keras_hub_basnet(os.fspath(weights))
    side_logits = _predict_module(x, resnet_stages, num_classes, filters, stage_relu)
    refined_logits = _refinement_module(side_logits[0], num_classes, filters)

    outputs = [
        SegmentationOutput("sigmoid", prediction=index == 0, name=output_name)(logits)
        for index, (output_name, logits) in enumerate(
            zip(OUTPUT_NAMES, [refined_logits, *side_logits], strict=True)
        )
    ]
    model = keras.Model(inputs, outputs, name=name)
    return load_weights(model)


def _is_keras_hub_basnet(weights):
    from seglab.models.basnet.keras_hub_weights import is_keras_hub_preset

    return is_keras_hub_preset(weights)


def _load_keras_hub_basnet(model, preset):
    from seglab.models.basnet.keras_hub_weights import load_basnet_preset

    load_basnet_preset(model, preset)


# weights= values besides model files: keras-hub's BASNet presets (names or preset folders).
_WEIGHT_CONVERTERS = {"basnet_duts": (_is_keras_hub_basnet, _load_keras_hub_basnet)}


def keras_hub_resnet_stages(backbone="resnet34", preset=None):
    """The four stages of a keras-hub ResNet as sub-models, without the stem conv and pool.

    Each stage model ends at the last block's residual sum, before its ReLU (as in the
    keras.io example), so the caller applies the ReLU. With ``preset=None`` the backbone is
    built from its constructor arguments; no download happens.
    """
    import keras_hub  # imported here: it imports TensorFlow when that is installed

    blocks = RESNET_BLOCKS[backbone]
    if preset is None:
        resnet = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512],
            stackwise_num_blocks=list(blocks),
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="basic_block",
            use_pre_activation=False,
        )
    else:
        resnet = _load_backbone_preset(keras_hub, preset, backbone)

    stages = []
    for index, num_blocks in enumerate(blocks):
        if index == 0:
            start = resnet.get_layer("pool1_pool").output
        else:
            start = resnet.get_layer(f"stack{index - 1}_block{blocks[index - 1] - 1}_out").output
        end = resnet.get_layer(f"stack{index}_block{num_blocks - 1}_add").output
        stages.append(keras.Model(start, end, name=f"{backbone}_stage{index + 1}"))
    return stages


def _copy_stage_weights(source_stages, target_stages):
    """Weights of keras-hub's ResNet stages into seglab's, layer by layer by name."""
    for source, target in zip(source_stages, target_stages, strict=True):
        for layer in target.layers:
            if layer.weights:
                layer.set_weights(source.get_layer(layer.name).get_weights())


def _load_backbone_preset(keras_hub, preset, backbone):
    try:
        resnet = keras_hub.models.ResNetBackbone.from_preset(preset)
    except OSError as error:  # requests' and huggingface_hub's network errors are OSErrors
        raise WeightsDownloadError(
            f"Could not load the keras-hub ResNet preset {preset!r} for the BASNet encoder "
            f"({type(error).__name__}: {error}). Presets are downloaded from Kaggle or "
            "Hugging Face, which needs a network connection: work offline with weights=None, "
            "or pass a local preset directory or a .weights.h5 file."
        ) from error
    expected = list(RESNET_BLOCKS[backbone])
    if (
        resnet.block_type != "basic_block"
        or resnet.use_pre_activation
        or list(resnet.stackwise_num_blocks) != expected
        or list(resnet.stackwise_num_filters) != [64, 128, 256, 512]
    ):
        raise ValueError(
            f"The keras-hub preset {preset!r} is not a {backbone} (basic blocks {expected}, "
            f"filters [64, 128, 256, 512], no pre-activation): it has block_type="
            f"{resnet.block_type!r}, blocks {list(resnet.stackwise_num_blocks)}, filters "
            f"{list(resnet.stackwise_num_filters)}, use_pre_activation="
            f"{resnet.use_pre_activation}."
        )
    return resnet


def _check_arguments(num_classes, input_shape, backbone, filters):
    if backbone not in RESNET_BLOCKS:
        raise ValueError(
            f"Unknown BASNet backbone {backbone!r}; choose one of {sorted(RESNET_BLOCKS)}."
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not isinstance(filters, int) or filters < 1:
        raise ValueError(f"filters must be a positive integer, got {filters!r}.")
    check_input_shape(input_shape, 32, "BASNet")


def _resolve_encoder_weights(weights, backbone, filters):
    """The keras-hub backbone preset to load, or None."""
    if weights is None:
        return None
    weights = os.fspath(weights)
    if weights == "imagenet":
        if backbone not in IMAGENET_PRESETS:
            raise ValueError(
                f"keras-hub publishes no ImageNet weights for a {backbone} with basic blocks "
                "and no pre-activation (of those it has only 'resnet_18_imagenet'; its "
                "'resnet_vd_34_imagenet' is a different network). Use encoder_weights=None, "
                "backbone='resnet18' with encoder_weights='imagenet', or weights='basnet_duts' "
                "for a whole trained BASNet."
            )
        weights = IMAGENET_PRESETS[backbone]
    if filters != 64:
        raise ValueError(
            f"The backbone preset {weights!r} has 64 filters in its first stage; it cannot "
            f"initialise a BASNet with filters={filters}. Use filters=64 or encoder_weights=None."
        )
    return weights


def _conv_bn_relu(x, filters, name, dilation=1):
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**BN_ARGS, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _basic_block(x, filters, name, stride=1, relu_out=True):
    """ResNet basic block: two 3x3 conv-BN, projection shortcut when the shape changes.

    Layer names follow keras-hub's ResNet (``{name}_0_conv`` is the shortcut).
    """
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(
            x
        )
        shortcut = layers.BatchNormalization(**BN_ARGS, name=f"{name}_0_bn")(shortcut)
    if stride == 1:
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    else:  # pad like PyTorch (and keras-hub) rather than TensorFlow's asymmetric "same"
        y = layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
        y = layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"{name}_1_conv")(y)
    y = layers.BatchNormalization(**BN_ARGS, name=f"{name}_1_bn")(y)
    y = layers.ReLU(name=f"{name}_1_relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(**BN_ARGS, name=f"{name}_2_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y) if relu_out else y


def own_resnet_stage(index, filters, num_blocks, name=None):
    """Stage ``index`` (0-3) of a ResNet like keras-hub's, as a sub-model ending before its
    last ReLU, with keras-hub's layer names.

    The one builder of BASNet's encoder stages at every width (keras-hub's ``ResNetBackbone``
    builds 64-wide first stages only); a keras-hub backbone preset is copied in by these layer
    names. As in keras-hub, the first stage keeps an identity shortcut and stride 1; later
    ones halve the size and project the shortcut.
    """
    stride = 1 if index == 0 else 2
    inputs = keras.Input(shape=(None, None, filters if index == 0 else filters // 2))
    x = inputs
    for block in range(num_blocks):
        x = _basic_block(
            x,
            filters,
            name=f"stack{index}_block{block}",
            stride=stride if block == 0 else 1,
            relu_out=block < num_blocks - 1,
        )
    return keras.Model(inputs, x, name=name or f"resnet_stage{index + 1}")


def _predict_module(inputs, resnet_stages, num_classes, filters, stage_relu=True):
    """Encoder, bridge, decoder and side heads; returns the 7 side logits at input size."""
    deep = filters * 8
    x = layers.Conv2D(filters, 3, padding="same", name="predict_input_conv")(inputs)

    skips = []
    for index, stage in enumerate(resnet_stages):
        x = stage(x)
        skips.append(x)
        if stage_relu:
            x = layers.ReLU(name=f"encoder{index + 1}_relu")(x)
    for stage in (5, 6):
        x = layers.MaxPooling2D(2, name=f"encoder{stage}_pool")(x)
        for block in range(3):
            x = _basic_block(x, deep, name=f"encoder{stage}_block{block}")
        skips.append(x)

    for layer in range(3):
        x = _conv_bn_relu(x, deep, name=f"bridge_{layer + 1}", dilation=2)
    bridge = x

    decoder_outputs = []
    for stage in range(len(skips), 0, -1):  # 6 (deepest) ... 1 (full resolution)
        if stage != len(skips):
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"decoder{stage}_up")(x)
        x = layers.Concatenate(name=f"decoder{stage}_concat")([skips[stage - 1], x])
        for layer in range(3):
            x = _conv_bn_relu(x, deep, name=f"decoder{stage}_{layer + 1}")
        decoder_outputs.insert(0, x)

    side_logits = []
    for index, features in enumerate([*decoder_outputs, bridge]):
        logits = layers.Conv2D(num_classes, 3, padding="same", name=f"side{index + 1}_conv")(
            features
        )
        if index > 0:  # the first decoder stage is already at full resolution
            logits = ResizeLike(name=f"side{index + 1}_resize")([logits, inputs])
        side_logits.append(logits)
    return side_logits


def _refinement_module(coarse, num_classes, filters):
    """Residual refinement: a light 4-stage encoder-decoder whose output is added to ``coarse``."""
    x = layers.Conv2D(filters, 3, padding="same", name="refine_input_conv")(coarse)
    skips = []
    for stage in range(1, 5):
        x = _conv_bn_relu(x, filters, name=f"refine_encoder{stage}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"refine_encoder{stage}_pool")(x)
    x = _conv_bn_relu(x, filters, name="refine_bridge")
    for stage in range(4, 0, -1):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"refine_decoder{stage}_up")(x)
        x = layers.Concatenate(name=f"refine_decoder{stage}_concat")([skips[stage - 1], x])
        x = _conv_bn_relu(x, filters, name=f"refine_decoder{stage}")
    residual = layers.Conv2D(num_classes, 3, padding="same", name="refine_output_conv")(x)
    return layers.Add(name="refine_add")([coarse, residual])
