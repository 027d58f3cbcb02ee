import keras
import numpy as np
import pytest

from seglab.metrics.confusion import ConfusionMatrix
from seglab.metrics.evaluation import evaluate, format_table
from seglab.metrics.salient import SODEvaluator
from seglab.metrics.salient_test import saliency_pairs

RNG = np.random.default_rng(1)


def _constant_model(outputs):
    """A callable 'model' whose prediction for each batch is given."""
    batches = iter(outputs)

    class Model:
        def predict_on_batch(self, images):
            return next(batches)

    return Model()


def test_evaluate_salient_list_output_equals_direct():
    pairs = saliency_pairs(count=4)
    probabilities = np.stack([p for p, _ in pairs]).astype(np.float32)[..., None] / 255.0
    masks = np.stack([g for _, g in pairs]).astype(np.float32)[..., None] / 255.0
    images = np.zeros((4, 24, 32, 3), np.float32)
    dataset = [(images[:2], masks[:2]), (images[2:], masks[2:], np.ones_like(masks[2:]))]
    side = np.zeros_like(probabilities)
    model = _constant_model([[probabilities[:2], side[:2]], [probabilities[2:], side[2:]]])
    results = evaluate(model, dataset, from_logits=False)
    direct = SODEvaluator()
    for pred, gt in pairs:
        direct.step(pred, gt)
    assert results["task"] == "salient" and results["from_logits"] is False
    for key, value in direct.get_results().items():
        assert results[key] == pytest.approx(value, abs=1e-9), key
    assert {"weighted_fmeasure", "relax_boundary_fmeasure"} <= results.keys()


def test_evaluate_multiclass_keras_model_with_deep_supervision_targets():
    inputs = keras.Input((8, 8, 3))
    logits = keras.layers.Conv2D(3, 1)(inputs)
    model = keras.Model(inputs, [logits, logits])
    images = RNG.normal(size=(5, 8, 8, 3)).astype(np.float32)
    masks = RNG.integers(0, 3, size=(5, 8, 8, 1)).astype(np.int32)
    dataset = [(images[:3], (masks[:3], masks[:3])), (images[3:], (masks[3:], masks[3:]))]
    results = evaluate(model, dataset, class_names=["bg", "pet", "edge"])
    predicted = np.argmax(model.predict(images, verbose=0)[0], axis=-1)
    expected = ConfusionMatrix(3)
    expected.step(predicted, masks)
    assert results["task"] == "multiclass" and results["num_images"] == 5
    np.testing.assert_array_equal(results["confusion_matrix"], expected.matrix)
    assert evaluate(model, dataset, max_batches=1)["num_images"] == 3
    with pytest.raises(ValueError, match="num_classes=4 but the model outputs 3"):
        evaluate(model, dataset, num_classes=4)
    with pytest.raises(ValueError, match="one-channel"):
        evaluate(model, dataset, task="salient")


def test_evaluate_passes_ignore_label_to_the_confusion_matrix():
    logits = RNG.normal(size=(2, 6, 6, 3)).astype(np.float32)
    masks = RNG.integers(0, 3, size=(2, 6, 6, 1)).astype(np.int32)
    masks[:, :2] = 255  # e.g. an unlabelled border
    dataset = [(np.zeros((2, 6, 6, 3), np.float32), masks)]
    results = evaluate(_constant_model([logits]), dataset, ignore_label=255)
    direct = ConfusionMatrix(3, ignore_label=255)
    direct.step(np.argmax(logits, axis=-1), masks[..., 0])
    expected = direct.get_results()["confusion_matrix"]
    np.testing.assert_array_equal(results["confusion_matrix"], expected)
    assert expected.sum() == 2 * 4 * 6
    with pytest.raises(ValueError, match="outside"):  # without it 255 is an unknown class
        evaluate(_constant_model([logits]), dataset)
    soft = [(np.zeros((2, 6, 6, 3), np.float32), np.zeros((2, 6, 6, 1), np.float32))]
    with pytest.raises(ValueError, match="ignore_label applies to task='multiclass'"):
        evaluate(_constant_model([logits[..., :1]]), soft, from_logits=True, ignore_label=255)


def test_evaluate_one_channel_logits_with_integer_masks_is_two_class():
    logits = np.array([[-2.0, 0.5], [3.0, -0.1]], np.float32).reshape(1, 2, 2, 1)
    masks = np.array([[0, 1], [1, 1]], np.int32).reshape(1, 2, 2, 1)
    dataset = [(np.zeros((1, 2, 2, 3), np.float32), masks)]
    results = evaluate(_constant_model([logits]), dataset, threshold=0.5, from_logits=True)
    # sigmoid(0.5) >= 0.5, sigmoid(-0.1) < 0.5: predicted [[0,1],[1,0]]
    assert results["task"] == "multiclass" and results["from_logits"] is True
    assert results["pixel_accuracy"] == pytest.approx(3 / 4)
    assert results["per_class_iou"] == pytest.approx([1 / 2, 2 / 3])


def test_evaluate_errors():
    dataset = [(np.zeros((1, 4, 4, 3)), np.zeros((1, 5, 5, 1), np.float32))]
    with pytest.raises(ValueError, match="differ in size"):
        evaluate(_constant_model([np.zeros((1, 4, 4, 1))]), dataset)
    with pytest.raises(ValueError, match="no batches"):
        evaluate(_constant_model([]), [])
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate(_constant_model([]), [], task="binary")


def test_format_table_with_reference():
    results = {
        "task": "salient",
        "mae": 0.05123,
        "max_fmeasure": 0.8,
        "smeasure": 0.75,
        "num_images": 80,
    }
    table = format_table(
        results, reference={"MAE": 0.042, "Sm": 0.866}, source="Qin et al. 2019, DUTS-TE"
    )
    lines = table.splitlines()
    assert lines[0] == "Evaluation: salient, 80 images"
    assert "| MAE ↓ | 0.0512 | 0.0420 |" in lines
    assert "| S-measure Sα ↑ | 0.7500 | 0.8660 |" in lines
    assert "| max Fβ (β²=0.3) ↑ | 0.8000 |  |" in lines
    assert lines[-1] == "Reference: Qin et al. 2019, DUTS-TE"
    # the spellings the recipes use
    table = format_table(results, reference={"max_fbeta": 0.852, "s_measure": 0.861})
    assert "| max Fβ (β²=0.3) ↑ | 0.8000 | 0.8520 |" in table
    assert "| S-measure Sα ↑ | 0.7500 | 0.8610 |" in table
    # the papers' other columns
    results = {**results, "weighted_fmeasure": 0.7, "relax_boundary_fmeasure": 0.6}
    table = format_table(results, reference={"relaxFbeta": 0.603, "weighted_fbeta": 0.803})
    assert "| weighted Fβ (β²=1) ↑ | 0.7000 | 0.8030 |" in table
    assert "| relaxed boundary Fβ (β²=0.3, ρ=3) ↑ | 0.6000 | 0.6030 |" in table
    table = format_table(results, reference={"relax_boundary_fbeta": 0.6, "wFm": 0.8})
    assert "| relaxed boundary Fβ (β²=0.3, ρ=3) ↑ | 0.6000 | 0.6000 |" in table
    assert "| weighted Fβ (β²=1) ↑ | 0.7000 | 0.8000 |" in table


def test_format_table_per_class_and_nan():
    results = ConfusionMatrix(3, class_names=["bg", "cat", "dog"])
    results.step(np.array([0, 1]), np.array([0, 1]))
    table = format_table(results.get_results(), reference={"mIoU": 0.7, "source": "paper"})
    assert "| mean IoU (classes present) ↑ | 1.0000 | 0.7000 |" in table
    assert "| IoU dog | n/a |  |" in table
    assert table.endswith("Reference: paper")
