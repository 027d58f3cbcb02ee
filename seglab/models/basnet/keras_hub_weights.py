"""keras-hub's BASNet weights (the ``basnet_duts`` preset) in seglab's BASNet.

keras-hub's ``BASNetBackbone`` and seglab's ``basnet()`` have the same layers (108,886,792
parameters at 64 filters with one class), so a trained keras-hub BASNet converts layer by
layer. The layers are paired by walking keras-hub's graph back from its named outputs
(``refine_out``, ``predict_out_1`` ... ``predict_out_7``) and, inside the ResNet stages, by
keras-hub's ResNet layer names, which seglab's stages share; keras-hub's automatic names
(``conv2d_17``, ``batch_normalization_4``) depend on what was built before and are not used.

Where the two networks differ (checked by ``basnet_differences`` and the tests):

- keras-hub feeds each ResNet stage's residual sum into the next stage (and stage 4's into the
  max pool of stage 5) *without* the ReLU that ends a ResNet stage. The keras.io example and
  the original PyTorch BASNet apply it, and so does seglab's ``basnet()`` by default; the
  conversion cannot bridge this (a ReLU has no weights), so ``basnet(weights="basnet_duts")``
  builds keras-hub's layout (``stage_relu=False``). The preset's weights were trained by Hamid
  Ali with the keras.io example's network, which has these ReLUs.
- The BatchNormalization layers of the bridge, decoder and refinement module use Keras'
  defaults in keras-hub (epsilon 1e-3, momentum 0.99) and PyTorch's in seglab (1e-5, 0.9). The
  conversion adds the difference of the epsilons to the moving variance, so inference is
  identical; training from the converted weights updates the statistics with momentum 0.9.
- keras-hub upsamples side output k by the fixed factor 2**(k-1) (32 for the bridge) with
  ``UpSampling2D(interpolation="bilinear")``; seglab resizes to the input size (bilinear,
  half-pixel centres). These are the same values.
- keras-hub's ``BASNetBackbone.count_params()`` is 108,896,456: it also counts the 9,664
  parameters of its ResNet's 7x7 stem (conv1), which BASNet never uses.
- keras-hub's preset preprocessor (``BASNetPreprocessor()`` in keras-hub's conversion script)
  has no image converter, so it neither resizes nor rescales. The keras.io example trained
  these weights on images divided by 255, which is seglab's ``normalization="unit"``.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from seglab.models.backbones import WeightsDownloadError

KERAS_HUB_PRESETS = ("basnet_duts",)
_REMOTE_PREFIXES = ("kaggle://", "hf://", "gs://", "modelscope://")


def is_keras_hub_preset(weights):
    """True for a keras-hub preset: a known name, a remote handle, or a directory written by
    ``save_to_preset`` (its ``config.json`` names a keras_hub class; a seglab run folder's
    does not); model files are not presets."""
    text = os.fspath(weights)
    if text in KERAS_HUB_PRESETS or text.startswith(_REMOTE_PREFIXES):
        return True
    try:
        with open(os.path.join(text, "config.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict):
        return False
    names = (config.get("module"), config.get("registered_name"))
    return any(str(name or "").startswith("keras_hub") for name in names)


def load_basnet_preset(model, preset="basnet_duts"):
    """Load keras-hub's BASNet ``preset`` into seglab BASNet ``model``; returns ``model``.

    Args:
        model: a ``seglab.models.basnet(...)`` with the preset's configuration (64 filters,
            ResNet-34, one class; ``stage_relu=False`` for outputs equal to keras-hub's).
        preset: a keras-hub preset name (``"basnet_duts"``), a Kaggle handle, or a local
            directory written by ``save_to_preset``.

    Raises:
        WeightsDownloadError: a remote preset could not be downloaded.
        ValueError: the preset is not a BASNet of the model's configuration.
    """
    import keras_hub  # imported here: it imports TensorFlow when that is installed

    preset = os.fspath(preset)
    try:
        hub_model = keras_hub.models.BASNetBackbone.from_preset(preset)
    except Exception as error:
        if os.path.isdir(preset):
            raise ValueError(
                f"{preset}: cannot load this keras-hub preset directory as a BASNet "
                f"({type(error).__name__}: {error})"
            ) from error
        raise WeightsDownloadError(
            f"could not download keras-hub preset {preset!r} (offline?): "
            f"{type(error).__name__}: {error}; pass weights=None or a local preset directory "
            "(keras_hub.models.BASNetImageSegmenter.from_preset(...).save_to_preset(path) on a "
            "machine with a network connection writes one)"
        ) from error
    convert_keras_hub_basnet(hub_model, model)
    return model


def convert_keras_hub_basnet(hub_model, model):
    """Copy the weights of keras-hub BASNet ``hub_model`` into seglab BASNet ``model``.

    Args:
        hub_model: a ``keras_hub.models.BASNetBackbone`` or ``BASNetImageSegmenter``.
        model: a ``seglab.models.basnet(...)`` of the same configuration.

    Returns:
        The differences between the two networks that remain after the conversion (see
        ``basnet_differences``); empty when ``model`` computes what ``hub_model`` computes.

    Raises:
        ValueError: naming the first layer whose structure or weight shapes differ. Nothing
            is copied then.
    """
    hub_graph = _walk_keras_hub(hub_model)
    seglab_graph = _walk_seglab(model)
    pairs = _pair_layers(hub_graph, seglab_graph)
    values = [
        (target, _converted_weights(source, target, where)) for where, source, target in pairs
    ]
    for target, weights in values:
        target.set_weights(weights)
    return basnet_differences(hub_model, model)


def basnet_differences(hub_model, model):
    """Where seglab BASNet ``model`` computes something other than keras-hub's ``hub_model``
    whatever the weights: one sentence per place, in network order (empty when none)."""
    hub_relu = _walk_keras_hub(hub_model).stage_relu
    seglab_relu = _walk_seglab(model).stage_relu
    differences = []
    for stage, (hub_has, seglab_has) in enumerate(zip(hub_relu, seglab_relu, strict=True)):
        if hub_has != seglab_has:
            target = f"ResNet stage {stage + 2}" if stage < 3 else "the max pool of stage 5"
            with_relu, without = ("seglab", "keras-hub") if seglab_has else ("keras-hub", "seglab")
            differences.append(
                f"input of {target}: {with_relu} applies a ReLU to the residual sum of stage "
                f"{stage + 1}, {without} does not"
            )
    return differences


def compare_with_keras_hub(hub_model, model, images, points=None):
    """Max absolute differences between the two networks at matching points, in network
    order, for ``images`` (RGB 0..255 as seglab models take them; keras-hub's model gets them
    through ``model``'s own preprocessing layer).

    Args:
        points: names of the points to compare (default: all of ``PROBE_POINTS``).

    Returns:
        ``[(point, max_abs_difference), ...]`` from the input convolution to the refined
        logits, so the first large value says where the networks part.
    """
    from seglab.models.preprocessing import preprocessing_of

    hub_graph = _walk_keras_hub(hub_model)
    seglab_graph = _walk_seglab(model)
    points = list(PROBE_POINTS if points is None else points)
    unknown = sorted(set(points) - set(PROBE_POINTS))
    if unknown:
        raise ValueError(f"unknown points {unknown}; choose among {list(PROBE_POINTS)}")
    preprocessing = preprocessing_of(model)
    hub_images = images if preprocessing is None else preprocessing(images)
    hub_probe = keras.Model(hub_graph.input, [hub_graph.probes[p] for p in points])
    seglab_probe = keras.Model(model.input, [seglab_graph.probes[p] for p in points])
    differences = []
    for point, hub_value, seglab_value in zip(
        points,
        hub_probe(hub_images, training=False),
        seglab_probe(images, training=False),
        strict=True,
    ):
        difference = keras.ops.convert_to_numpy(hub_value) - keras.ops.convert_to_numpy(
            seglab_value
        )
        differences.append((point, float(np.max(np.abs(difference)))))
    return differences


# The points compare_with_keras_hub can compare, in network order.
PROBE_POINTS = (
    "input conv",
    *[f"ResNet stage {stage}" for stage in (1, 2, 3, 4)],
    "encoder stage 5",
    "encoder stage 6",
    "bridge",
    *[f"decoder {stage}" for stage in (6, 5, 4, 3, 2, 1)],
    *[f"side {side} logits" for side in range(1, 8)],
    "refined logits",
)


@dataclasses.dataclass
class _Graph:
    """One network's layers by role (``{role: layer}``), the ReLU before ResNet stages 2-4 and
    the stage-5 pool (``stage_relu``), and named intermediate tensors (``probes``)."""

    model: object
    input: object
    layers: dict
    stage_relu: list
    probes: dict
    stages: list  # the four ResNet stage sub-models


_HUB_OUTPUTS = ("refine_out", *[f"predict_out_{side}" for side in range(1, 8)])


def _walk_keras_hub(hub_model):
    """Find every layer of keras-hub's BASNet by its place in the graph."""
    backbone = getattr(hub_model, "backbone", hub_model)
    missing = [name for name in _HUB_OUTPUTS if not _has_layer(backbone, name)]
    if missing:
        raise ValueError(
            f"{hub_model.name}: not a keras-hub BASNet (no {', '.join(missing)} output); pass "
            "a keras_hub.models.BASNetBackbone or BASNetImageSegmenter"
        )
    try:
        return _walk_keras_hub_graph(backbone)
    except ValueError as error:
        raise ValueError(f"keras-hub model {backbone.name!r}: {error}") from error


def _walk_keras_hub_graph(backbone):
    layers, probes = {}, {}

    def conv_blocks(tensor, names, where, dilation=1):
        for name in names:
            _, tensor = _take(tensor, _is_relu, f"the ReLU of {where}")
            bn, tensor = _take(tensor, _is_batch_norm, f"the BN of {where}")
            conv, tensor = _take(tensor, _is_conv(dilation), f"the conv of {where}")
            layers[f"{name}_conv"], layers[f"{name}_bn"] = conv, bn
        return tensor

    # Side outputs: sigmoid <- head (Sequential: conv, then upsampling except side 1).
    features = {}
    for side in range(1, 8):
        head_output = _input_of(backbone.get_layer(f"predict_out_{side}"))
        head, features[side] = _take(head_output, _is_head, f"the head of side output {side}")
        # keras-hub upsamples by a fixed factor, seglab to the input size: the same values.
        factor = 2 ** min(side - 1, 5)
        _expect(_upsamples_bilinear(head, factor), head, f"the x{factor} upsampling of side {side}")
        layers[f"side{side}_conv"] = _head_conv(head)
        probes[f"side {side} logits"] = head_output

    # Bridge and decoder: three conv-BN-ReLU per stage, fed by concat(skip, upsampled).
    bridge = features[7]
    probes["bridge"] = bridge
    skips = {}
    for stage in range(1, 7):
        probes[f"decoder {stage}"] = features[stage]
        names = [f"decoder{stage}_{layer}" for layer in (3, 2, 1)]
        concat_output = conv_blocks(features[stage], names, f"decoder stage {stage}")
        where = f"the concatenation of decoder stage {stage}"
        concat, (skips[stage], deeper) = _take(concat_output, _is_concat, where, arity=2)
        if stage < 6:
            _, deeper = _take(deeper, _is_bilinear_doubling, f"decoder {stage} upsampling")
        expected = features[stage + 1] if stage < 6 else bridge
        _expect(deeper is expected, concat, f"the input of decoder stage {stage}")
    names = [f"bridge_{layer}" for layer in (3, 2, 1)]
    stage6 = conv_blocks(bridge, names, "the bridge", dilation=2)
    _expect(stage6 is skips[6], _producer(stage6)[0], "the output of encoder stage 6")

    # Encoder stages 5 and 6: max pool, then three basic blocks with identity shortcuts.
    stage_relu = []
    for stage in (6, 5):
        probes[f"encoder stage {stage}"] = skips[stage]
        tensor = skips[stage]
        for block in (2, 1, 0):
            tensor = _basic_block(tensor, f"encoder{stage}_block{block}", layers)
        pool, tensor = _take(tensor, _is_max_pool, f"the max pool of stage {stage}")
        if stage == 5:
            stage_relu.insert(0, _skip_relu(tensor, skips[4], pool))
        else:
            _expect(tensor is skips[5], pool, "the input of stage 6")

    # ResNet stages 1-4: sub-models; stage 1 starts from the input conv.
    stages = []
    for stage in (4, 3, 2, 1):
        probes[f"ResNet stage {stage}"] = skips[stage]
        is_model = lambda layer: isinstance(layer, keras.Model)  # noqa: E731
        sub_model, tensor = _take(skips[stage], is_model, f"ResNet stage {stage}")
        stages.insert(0, sub_model)
        if stage > 1:
            stage_relu.insert(0, _skip_relu(tensor, skips[stage - 1], sub_model))
    input_conv, image = _take(tensor, _is_conv(1), "the input conv")
    _expect(image is backbone.input, input_conv, "the input conv (fed by the image)")
    layers["predict_input_conv"] = input_conv
    probes["input conv"] = tensor

    # Refinement: add(coarse, head(decoder 1)) with a 4-stage light encoder-decoder.
    refined = _input_of(backbone.get_layer("refine_out"))
    is_add = lambda layer: isinstance(layer, keras.layers.Add)  # noqa: E731
    add, (coarse, residual) = _take(refined, is_add, "the refined sum", arity=2)
    _expect(coarse is probes["side 1 logits"], add, "the coarse map of the refinement")
    head, tensor = _take(residual, _is_head, "the refinement head")
    layers["refine_output_conv"] = _head_conv(head)
    refine_skips = {}
    for stage in (1, 2, 3, 4):
        where = f"refinement decoder stage {stage}"
        concat_output = conv_blocks(tensor, [f"refine_decoder{stage}"], where)
        _, (refine_skips[stage], upsampled) = _take(concat_output, _is_concat, where, arity=2)
        _, tensor = _take(upsampled, _is_bilinear_doubling, f"the upsampling of {where}")
    pooled = conv_blocks(tensor, ["refine_bridge"], "the refinement bridge")
    for stage in (4, 3, 2, 1):
        where = f"refinement encoder stage {stage}"
        pool, encoder_output = _take(pooled, _is_max_pool, f"the max pool after {where}")
        _expect(encoder_output is refine_skips[stage], pool, f"the output of {where}")
        pooled = conv_blocks(encoder_output, [f"refine_encoder{stage}"], where)
    refine_input_conv, source = _take(pooled, _is_conv(1), "the refinement input conv")
    _expect(source is coarse, refine_input_conv, "the refinement input (the coarse map)")
    layers["refine_input_conv"] = refine_input_conv
    probes["refined logits"] = refined
    return _Graph(backbone, backbone.input, layers, stage_relu, probes, stages)


def _walk_seglab(model):
    """seglab's BASNet names every layer, so its graph is read by name."""
    try:
        return _walk_seglab_graph(model)
    except ValueError as error:
        raise ValueError(f"seglab model {model.name!r}: {error}") from error


def _walk_seglab_graph(model):
    try:
        stages = [_stage_of(model, index) for index in range(1, 5)]
        layers = {
            name: model.get_layer(name)
            for name in [
                "predict_input_conv",
                *[f"side{side}_conv" for side in range(1, 8)],
                *[
                    f"decoder{stage}_{layer}_{kind}"
                    for stage in range(1, 7)
                    for layer in (1, 2, 3)
                    for kind in ("conv", "bn")
                ],
                *[f"bridge_{layer}_{kind}" for layer in (1, 2, 3) for kind in ("conv", "bn")],
                *[
                    f"encoder{stage}_block{block}_{conv}_{kind}"
                    for stage in (5, 6)
                    for block in (0, 1, 2)
                    for conv in (1, 2)
                    for kind in ("conv", "bn")
                ],
                "refine_input_conv",
                "refine_output_conv",
                *[
                    f"refine_{part}_{kind}"
                    for part in [
                        *[f"encoder{stage}" for stage in range(1, 5)],
                        "bridge",
                        *[f"decoder{stage}" for stage in range(1, 5)],
                    ]
                    for kind in ("conv", "bn")
                ],
            ]
        }
    except ValueError as error:
        raise ValueError(f"not a seglab BASNet ({error})") from error
    stage_relu = [
        _skip_relu(_input_of(stages[stage]), _output_of(stages[stage - 1]), stages[stage])
        for stage in (1, 2, 3)
    ]
    pool = model.get_layer("encoder5_pool")
    stage_relu.append(_skip_relu(_input_of(pool), _output_of(stages[3]), pool))

    def output_of(name):
        return _output_of(model.get_layer(name))

    probes = {"input conv": output_of("predict_input_conv")}
    for index, stage in enumerate(stages):
        probes[f"ResNet stage {index + 1}"] = _output_of(stage)
    for stage in (5, 6):
        probes[f"encoder stage {stage}"] = output_of(f"encoder{stage}_block2_out")
    probes["bridge"] = output_of("bridge_3_relu")
    for stage in range(6, 0, -1):
        probes[f"decoder {stage}"] = output_of(f"decoder{stage}_3_relu")
    for side in range(1, 8):
        probes[f"side {side} logits"] = output_of(
            "side1_conv" if side == 1 else f"side{side}_resize"
        )
    probes["refined logits"] = output_of("refine_add")
    return _Graph(model, model.input, layers, stage_relu, probes, stages)


def _pair_layers(hub_graph, seglab_graph):
    """``[(where, keras-hub layer, seglab layer)]`` in network order, covering every weighted
    layer of the seglab model exactly once."""
    pairs = [("input conv", hub_graph.layers["predict_input_conv"],
              seglab_graph.layers["predict_input_conv"])]  # fmt: skip
    for index, (hub_stage, seglab_stage) in enumerate(
        zip(hub_graph.stages, seglab_graph.stages, strict=True)
    ):
        hub_layers = {layer.name: layer for layer in hub_stage.layers if layer.weights}
        seglab_layers = {layer.name: layer for layer in seglab_stage.layers if layer.weights}
        if sorted(hub_layers) != sorted(seglab_layers):
            missing = sorted(set(seglab_layers) ^ set(hub_layers))
            raise ValueError(
                f"ResNet stage {index + 1}: keras-hub's {hub_stage.name} and seglab's "
                f"{seglab_stage.name} have different layers ({', '.join(missing[:6])}); are "
                "both ResNet-34 (or both ResNet-18)?"
            )
        pairs += [
            (f"ResNet stage {index + 1}", hub_layers[name], seglab_layers[name])
            for name in seglab_layers
        ]
    order = list(seglab_graph.layers)
    pairs += [
        (name, hub_graph.layers[name], seglab_graph.layers[name])
        for name in sorted(order, key=_network_position)
        if name != "predict_input_conv"
    ]
    for network, graph, side in (("keras-hub", hub_graph, 1), ("seglab", seglab_graph, 2)):
        paired = {id(pair[side]) for pair in pairs}
        left_over = [
            layer.name for layer in _weighted_layers(graph.model) if id(layer) not in paired
        ]
        if left_over:
            raise ValueError(
                f"{network} layers without a counterpart in the other BASNet: "
                f"{', '.join(left_over[:6])}"
            )
    return pairs


def _weighted_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def _network_position(name):
    # Forward order of the roles, for error messages that name the first mismatch.
    prefixes = ("encoder", "bridge", "decoder6", "decoder5", "decoder4", "decoder3",
                "decoder2", "decoder1", "side", "refine_input", "refine_encoder",
                "refine_bridge", "refine_decoder4", "refine_decoder3", "refine_decoder2",
                "refine_decoder1", "refine_output")  # fmt: skip
    for position, prefix in enumerate(prefixes):
        if name.startswith(prefix):
            return position, name
    return len(prefixes), name


def _converted_weights(source, target, where):
    """``source``'s weights for ``target``; BN epsilons are bridged by the moving variance."""
    values = [np.asarray(keras.ops.convert_to_numpy(w)) for w in source.weights]
    if isinstance(source, keras.layers.BatchNormalization) != isinstance(
        target, keras.layers.BatchNormalization
    ):
        raise ValueError(
            f"{where}: keras-hub layer {source.name} ({type(source).__name__}) faces seglab "
            f"layer {target.name} ({type(target).__name__})"
        )
    if isinstance(source, keras.layers.BatchNormalization):
        if not (source.center and source.scale and target.center and target.scale):
            raise ValueError(f"{where}: {source.name} and {target.name} must both have beta "
                             "and gamma")  # fmt: skip
        values = [
            keras.ops.convert_to_numpy(w)
            for w in (source.gamma, source.beta, source.moving_mean, source.moving_variance)
        ]
        # y = (x - mean) / sqrt(var + eps): same y when var + eps is the same.
        values[3] = values[3] + (source.epsilon - target.epsilon)
        if values[3].min() < 0:
            raise ValueError(
                f"{where}: the moving variance of {source.name} cannot absorb epsilon "
                f"{source.epsilon} -> {target.epsilon}"
            )
        target_weights = [target.gamma, target.beta, target.moving_mean, target.moving_variance]
    else:
        target_weights = target.weights
    source_shapes = [tuple(v.shape) for v in values]
    target_shapes = [tuple(w.shape) for w in target_weights]
    if source_shapes != target_shapes:
        raise ValueError(
            f"{where}: keras-hub layer {source.name} has weights of shapes {source_shapes}, "
            f"seglab layer {target.name} needs {target_shapes} (same num_classes, filters "
            "and backbone?)"
        )
    if isinstance(source, keras.layers.BatchNormalization):
        # set_weights follows target.weights' order; put the values there.
        by_id = {id(w): v for w, v in zip(target_weights, values, strict=True)}
        return [by_id[id(w)] for w in target.weights]
    return values


def _basic_block(tensor, name, layers):
    """Walk back one keras-hub ResNet basic block with an identity shortcut."""
    _, tensor = _take(tensor, _is_relu, f"the output ReLU of {name}")
    is_add = lambda layer: isinstance(layer, keras.layers.Add)  # noqa: E731
    add, (shortcut, residual) = _take(tensor, is_add, f"the residual sum of {name}", arity=2)
    for conv in (2, 1):
        if conv == 1:
            _, residual = _take(residual, _is_relu, f"the inner ReLU of {name}")
        bn, residual = _take(residual, _is_batch_norm, f"a BN of {name}")
        conv_layer, residual = _take(residual, _is_conv(1), f"a conv of {name}")
        layers[f"{name}_{conv}_conv"], layers[f"{name}_{conv}_bn"] = conv_layer, bn
    _expect(residual is shortcut, add, f"the identity shortcut of {name}")
    return shortcut


def _skip_relu(tensor, stage_output, consumer):
    """True when ``tensor`` is ReLU(``stage_output``), False when it is ``stage_output``."""
    if tensor is stage_output:
        return False
    relu, source = _take(tensor, _is_relu, f"the input of {consumer.name}")
    _expect(source is stage_output, relu, f"the input of {consumer.name}")
    return True


def _take(tensor, is_expected, what, arity=1):
    """``(layer, input)`` (``arity`` 1) or ``(layer, inputs)`` of the layer that computed
    ``tensor``; raises when it is not what ``is_expected`` accepts."""
    layer, inputs = _producer(tensor)
    _expect(is_expected(layer) and len(inputs) == arity, layer, what)
    return layer, (inputs[0] if arity == 1 else inputs)


def _producer(tensor):
    """The layer that computed ``tensor`` and that call's input tensors."""
    history = tensor._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    return history.operation, list(node.input_tensors)


def _is_batch_norm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _is_concat(layer):
    return isinstance(layer, keras.layers.Concatenate) and layer.axis in (-1, 3)


def _is_max_pool(layer):
    return isinstance(layer, keras.layers.MaxPooling2D) and tuple(layer.pool_size) == (2, 2)


def _is_conv(dilation):
    def is_conv(layer):
        return isinstance(layer, keras.layers.Conv2D) and tuple(layer.dilation_rate) == (
            dilation,
            dilation,
        )

    return is_conv


def _is_head(layer):
    """A side or refinement head: one conv, possibly followed by an upsampling."""
    inner = getattr(layer, "layers", [layer])
    return sum(isinstance(part, keras.layers.Conv2D) for part in inner) == 1


def _upsamples_bilinear(head, factor):
    sizes = [
        tuple(part.size)
        for part in getattr(head, "layers", [])
        if isinstance(part, keras.layers.UpSampling2D) and part.interpolation == "bilinear"
    ]
    return sizes == ([] if factor == 1 else [(factor, factor)])


def _head_conv(head):
    return next(
        part for part in getattr(head, "layers", [head]) if isinstance(part, keras.layers.Conv2D)
    )


def _input_of(layer):
    """The input tensor of ``layer``'s (single) call in the enclosing graph."""
    (tensor,) = layer._inbound_nodes[0].input_tensors
    return tensor


def _output_of(layer):
    """The output tensor of ``layer``'s (single) call in the enclosing graph (for a sub-model,
    ``.output`` would be its own inner tensor)."""
    (tensor,) = layer._inbound_nodes[0].output_tensors
    return tensor


def _has_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return not config.get("max_value") and not config.get("negative_slope")
    return isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] in (
        "relu",
    )


def _is_bilinear_doubling(layer):
    return (
        isinstance(layer, keras.layers.UpSampling2D)
        and tuple(layer.size) == (2, 2)
        and layer.interpolation == "bilinear"
    )


def _stage_of(model, index):
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name.endswith(f"_stage{index}"):
            return layer
    raise ValueError(f"no ResNet stage {index} sub-model (a layer named '*_stage{index}')")


def _expect(condition, layer, what):
    if not condition:
        raise ValueError(
            f"not the BASNet layout at {what}: found layer {layer.name!r} ({type(layer).__name__})"
        )
