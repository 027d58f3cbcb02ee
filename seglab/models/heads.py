"""Declared outputs: every seglab model says what its outputs are.

The last layer of each output is a ``SegmentationOutput``: it applies the final activation in
float32 (so losses stay in float32 under mixed precision) and records whether the output is
the prediction or a side output for deep supervision. ``output_info(model)`` reads them, so
evaluation, display and prediction never guess logits from probabilities by value ranges.
"""

import dataclasses

import keras

ACTIVATIONS = {"linear": "logits", "sigmoid": "probabilities", "softmax": "probabilities"}


@keras.saving.register_keras_serializable(package="seglab")
class SegmentationOutput(keras.layers.Layer):
    """The final activation of one model output, in float32, with its role.

    Args:
        activation: ``"linear"`` (logits), ``"sigmoid"`` or ``"softmax"`` (probabilities).
        prediction: ``True`` for the output to use; ``False`` for side outputs.
    """

    def __init__(self, activation="linear", prediction=True, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.prediction = bool(prediction)

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        if self.activation == "sigmoid":
            return keras.ops.sigmoid(x)
        if self.activation == "softmax":
            return keras.ops.softmax(x, axis=-1)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "activation": self.activation,
            "prediction": self.prediction,
        }


@dataclasses.dataclass(frozen=True)
class OutputInfo:
    """What a model's outputs are.

    Attributes:
        kind: ``"logits"`` or ``"probabilities"`` (of the prediction output).
        prediction_index: index of the output to use (0 for every seglab model).
        num_outputs: outputs in all (side outputs included).
        num_classes: channels of the prediction.
        activation: ``"linear"``, ``"sigmoid"`` or ``"softmax"``.
    """

    kind: str
    prediction_index: int
    num_outputs: int
    num_classes: int
    activation: str

    @property
    def from_logits(self) -> bool:
        return self.kind == "logits"


def output_info(model) -> OutputInfo:
    """The declared outputs of a seglab model.

    Raises:
        ValueError: the model declares none (not built by seglab, or saved by seglab 0.1:
            ``seglab.training.load_run`` upgrades those from the run's ``config.json``).
    """
    heads = []
    for index, tensor in enumerate(model.outputs):
        layer = tensor._keras_history.operation
        if not isinstance(layer, SegmentationOutput):
            raise ValueError(
                f"model {model.name!r}: output {index} does not come from a SegmentationOutput "
                "layer, so it is not known whether it gives logits or probabilities. Build the "
                "model with seglab.models, or add seglab.models.heads.SegmentationOutput(...) as "
                "the last layer of each output."
            )
        heads.append(layer)
    predictions = [index for index, layer in enumerate(heads) if layer.prediction]
    if len(predictions) != 1:
        raise ValueError(
            f"model {model.name!r}: exactly one output must be the prediction, found "
            f"{len(predictions)}"
        )
    index = predictions[0]
    head = heads[index]
    return OutputInfo(
        kind=ACTIVATIONS[head.activation],
        prediction_index=index,
        num_outputs=len(heads),
        num_classes=int(model.outputs[index].shape[-1]),
        activation=head.activation,
    )


def prediction_output(model, outputs):
    """Output ``prediction_index`` of ``model``'s ``outputs`` (a list, or one array)."""
    if isinstance(outputs, list | tuple):
        return outputs[output_info(model).prediction_index]
    return outputs


def to_probabilities(model, outputs):
    """The prediction among ``model``'s raw ``outputs`` (one array or a list), as
    probabilities: a sigmoid or softmax is applied when the model declares logits."""
    import numpy as np

    info = output_info(model)
    values = np.asarray(prediction_output(model, outputs), dtype=np.float32)
    if info.kind == "probabilities":
        return values
    if values.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-values))
    values = values - values.max(axis=-1, keepdims=True)
    exponentials = np.exp(values)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)
