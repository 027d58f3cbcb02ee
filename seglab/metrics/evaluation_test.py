import warnings

import keras
import numpy as np
import pytest
from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure

from seglab.metrics.evaluation import ConfusionMatrix, SODEvaluator, evaluate, format_table

RNG = np.random.default_rng(1)


def _saliency_pairs(count=3, size=(24, 32)):
    pairs = []
    for _ in range(count):
        gt = np.zeros(size, np.uint8)
        top, left = RNG.integers(0, 10, size=2)
        gt[top : top + 10, left : left + 14] = 255
        noise = RNG.normal(0, 40, size=size)
        pred = np.clip(gt * 0.8 + noise + 20, 0, 255).astype(np.uint8)
        pairs.append((pred, gt))
    return pairs


def test_sod_evaluator_equals_py_sod_metrics():
    pairs = _saliency_pairs()
    evaluator = SODEvaluator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = [MAE(), Fmeasure(beta=0.3), Smeasure(), Emeasure()]
    for pred, gt in pairs:
        evaluator.step(pred[..., None], gt)  # (H, W, 1) is accepted too
        for metric in direct:
            metric.step(pred=pred, gt=gt)
    results = evaluator.get_results()
    fm_curve = direct[1].get_results()["fm"]["curve"]
    em_curve = direct[3].get_results()["em"]["curve"]
    assert results["mae"] == pytest.approx(direct[0].get_results()["mae"], abs=1e-12)
    assert results["max_fmeasure"] == pytest.approx(fm_curve.max(), abs=1e-12)
    assert results["mean_fmeasure"] == pytest.approx(fm_curve.mean(), abs=1e-12)
    assert results["smeasure"] == pytest.approx(direct[2].get_results()["sm"], abs=1e-12)
    assert results["mean_emeasure"] == pytest.approx(em_curve.mean(), abs=1e-12)
    assert results["max_emeasure"] == pytest.approx(em_curve.max(), abs=1e-12)
    assert results["num_images"] == 3
    assert 0.0 < results["mae"] < 0.5 and results["max_fmeasure"] > 0.5


def test_sod_evaluator_rejects_bad_input():
    evaluator = SODEvaluator()
    with pytest.raises(TypeError, match="uint8"):
        evaluator.step(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        evaluator.step(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        evaluator.get_results()


def test_confusion_matrix_against_hand_computed():
    gt = np.array([[0, 0, 1], [1, 1, 3]])
    pred = np.array([[0, 1, 1], [1, 0, 3]])
    matrix = ConfusionMatrix(4, class_names=["bg", "a", "b", "c"])
    matrix.step(pred, gt[..., None])
    matrix.step(np.array([[3]]), np.array([[3]]))
    results = matrix.get_results()
    # rows truth, columns prediction; class 2 absent from both
    expected = np.array([[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]])
    np.testing.assert_array_equal(results["confusion_matrix"], expected)
    iou = results["per_class_iou"]
    assert iou[0] == pytest.approx(1 / 3) and iou[1] == pytest.approx(2 / 4)
    assert np.isnan(iou[2]) and iou[3] == 1.0
    assert results["mean_iou"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert results["mean_iou_all_classes"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 4)
    assert results["pixel_accuracy"] == pytest.approx(5 / 7)
    assert results["num_images"] == 2 and results["class_names"][3] == "c"


def test_confusion_matrix_matches_keras_mean_iou():
    gt = RNG.integers(0, 5, size=(3, 16, 16))
    pred = RNG.integers(0, 4, size=(3, 16, 16))  # class 4 never predicted
    matrix = ConfusionMatrix(5)
    for p, g in zip(pred, gt, strict=True):
        matrix.step(p, g)
    keras_iou = keras.metrics.MeanIoU(num_classes=5)
    keras_iou.update_state(gt, pred)
    assert matrix.get_results()["mean_iou"] == pytest.approx(float(keras_iou.result()), abs=1e-5)


def test_confusion_matrix_ignore_index_and_errors():
    matrix = ConfusionMatrix(2, ignore_index=255)
    matrix.step(np.array([1, 1, 0]), np.array([1, 255, 0]))
    assert matrix.get_results()["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError, match="gt has class id 7 outside"):
        matrix.step(np.array([1]), np.array([7]))
    with pytest.raises(TypeError, match="integer class ids"):
        matrix.step(np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match="3 class names given for 2 classes"):
        ConfusionMatrix(2, class_names=["a", "b", "c"])


def _constant_model(outputs):
    """A callable 'model' whose prediction for each batch is given."""
    batches = iter(outputs)

    class Model:
        def predict_on_batch(self, images):
            return next(batches)

    return Model()


def test_evaluate_salient_list_output_equals_direct():
    pairs = _saliency_pairs(count=4)
    probabilities = np.stack([p for p, _ in pairs]).astype(np.float32)[..., None] / 255.0
    masks = np.stack([g for _, g in pairs]).astype(np.float32)[..., None] / 255.0
    images = np.zeros((4, 24, 32, 3), np.float32)
    dataset = [(images[:2], masks[:2]), (images[2:], masks[2:], np.ones_like(masks[2:]))]
    side = np.zeros_like(probabilities)
    model = _constant_model([[probabilities[:2], side[:2]], [probabilities[2:], side[2:]]])
    results = evaluate(model, dataset)
    direct = SODEvaluator()
    for pred, gt in pairs:
        direct.step(pred, gt)
    assert results["task"] == "salient" and results["from_logits"] is False
    for key, value in direct.get_results().items():
        assert results[key] == pytest.approx(value, abs=1e-9), key


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


def test_evaluate_one_channel_logits_with_integer_masks_is_two_class():
    logits = np.array([[-2.0, 0.5], [3.0, -0.1]], np.float32).reshape(1, 2, 2, 1)
    masks = np.array([[0, 1], [1, 1]], np.int32).reshape(1, 2, 2, 1)
    dataset = [(np.zeros((1, 2, 2, 3), np.float32), masks)]
    results = evaluate(_constant_model([logits]), dataset, threshold=0.5)
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


def test_format_table_per_class_and_nan():
    results = ConfusionMatrix(3, class_names=["bg", "cat", "dog"])
    results.step(np.array([0, 1]), np.array([0, 1]))
    table = format_table(results.get_results(), reference={"mIoU": 0.7, "source": "paper"})
    assert "| mean IoU (classes present) ↑ | 1.0000 | 0.7000 |" in table
    assert "| IoU dog | n/a |  |" in table
    assert table.endswith("Reference: paper")
