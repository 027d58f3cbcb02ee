import keras
import numpy as np
import pytest

from seglab.models.heads import SegmentationOutput, output_info, to_probabilities


def _model(activations, channels=3):
    inputs = keras.Input((4, 4, 3))
    features = keras.layers.Conv2D(channels, 1)(inputs)
    outputs = [
        SegmentationOutput(activation, prediction=index == 0, name=f"out{index}")(features)
        for index, activation in enumerate(activations)
    ]
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0])


def test_declared_outputs_are_read_back_after_saving(tmp_path):
    model = _model(["sigmoid", "sigmoid", "sigmoid"], channels=1)
    model.save(tmp_path / "m.keras")
    info = output_info(keras.saving.load_model(tmp_path / "m.keras"))
    assert (info.kind, info.prediction_index, info.num_outputs, info.num_classes) == (
        "probabilities",
        0,
        3,
        1,
    )
    assert output_info(_model(["linear"])).from_logits


def test_probabilities_from_logits_follow_the_declaration():
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    logits_model = _model(["linear"])
    logits = logits_model.predict(images, verbose=0)
    probabilities = to_probabilities(logits_model, logits)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    expected = shifted / shifted.sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)
    sigmoid_model = _model(["sigmoid", "sigmoid"], channels=1)
    outputs = sigmoid_model.predict(images, verbose=0)
    np.testing.assert_array_equal(to_probabilities(sigmoid_model, outputs), outputs[0])


def test_outputs_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model(["linear", "linear"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in model.outputs)


def test_undeclared_outputs_and_two_predictions_are_errors():
    inputs = keras.Input((4, 4, 3))
    with pytest.raises(ValueError, match="SegmentationOutput"):
        output_info(keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs)))
    x = keras.layers.Conv2D(1, 1)(inputs)
    both = keras.Model(inputs, [SegmentationOutput("sigmoid")(x), SegmentationOutput("sigmoid")(x)])
    with pytest.raises(ValueError, match="exactly one output"):
        output_info(both)
    with pytest.raises(ValueError, match="activation must be one of"):
        SegmentationOutput("relu")
