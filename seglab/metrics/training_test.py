import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from seglab.metrics.training import (
    BinaryMeanIoU,
    BinaryPixelAccuracy,
    SparsePixelAccuracy,
    segmentation_metrics,
)

RNG = np.random.default_rng(0)


def _numpy_binary_ious(target, probability, threshold=0.5, target_threshold=0.5):
    truth = target >= target_threshold
    predicted = probability >= threshold
    ious = []
    for t, p in ((~truth, ~predicted), (truth, predicted)):
        union = np.logical_or(t, p).sum()
        ious.append(np.logical_and(t, p).sum() / union if union else np.nan)
    return np.array(ious)


def _soft_batch():
    target = RNG.uniform(size=(2, 8, 8, 1)).astype("float32")  # bilinear-resized masks
    probability = RNG.uniform(size=(2, 8, 8, 1)).astype("float32")
    return target, probability


def test_binary_mean_iou_thresholds_soft_targets_like_numpy():
    target, probability = _soft_batch()
    metric = BinaryMeanIoU(threshold=0.4)
    metric.update_state(target, probability)
    expected = np.nanmean(_numpy_binary_ious(target, probability, threshold=0.4))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    # Keras' BinaryIoU casts soft targets to int (0.9 -> 0): that is why this class exists.
    plain = keras.metrics.BinaryIoU(threshold=0.4)
    plain.update_state(target, probability)
    assert float(plain.result()) != pytest.approx(expected, abs=1e-3)


def test_binary_mean_iou_from_logits_and_foreground_only():
    target, probability = _soft_batch()
    logits = np.log(probability / (1 - probability))
    metric = BinaryMeanIoU(from_logits=True, target_class_ids=(1,))
    metric.update_state(target, logits)
    expected = _numpy_binary_ious(target, probability)[1]
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_binary_mean_iou_leaves_absent_class_out():
    # All background in target and prediction: foreground IoU is 0/0 and is not averaged in.
    metric = BinaryMeanIoU()
    metric.update_state(np.zeros((1, 4, 4, 1)), np.full((1, 4, 4, 1), 0.1))
    assert float(metric.result()) == pytest.approx(1.0, abs=1e-6)


def test_binary_pixel_accuracy_like_numpy_with_threshold_inclusive():
    target, probability = _soft_batch()
    probability[0, 0, 0, 0] = 0.5  # counts as foreground, as in BinaryMeanIoU
    target[0, 0, 0, 0] = 1.0
    metric = BinaryPixelAccuracy()
    metric.update_state(target, probability)
    expected = np.mean((target >= 0.5) == (probability >= 0.5))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    logits_metric = BinaryPixelAccuracy(from_logits=True, threshold=0.7)
    logits_metric.update_state(target, np.log(probability / (1 - probability)))
    expected = np.mean((target >= 0.5) == (probability >= 0.7))
    assert float(logits_metric.result()) == pytest.approx(expected, abs=1e-6)


def test_multiclass_metrics_from_logits_like_numpy():
    logits = RNG.normal(size=(2, 6, 6, 3)).astype("float32")
    target = RNG.integers(0, 3, size=(2, 6, 6, 1)).astype("int32")
    accuracy, mean_iou = segmentation_metrics(num_classes=3)
    accuracy.update_state(target, logits)
    mean_iou.update_state(target, logits)
    predicted = logits.argmax(-1).reshape(-1)
    truth = target.reshape(-1)
    matrix = np.zeros((3, 3))
    np.add.at(matrix, (truth, predicted), 1)
    iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    assert float(accuracy.result()) == pytest.approx(np.mean(truth == predicted), abs=1e-6)
    assert float(mean_iou.result()) == pytest.approx(iou.mean(), abs=1e-5)
    assert [accuracy.name, mean_iou.name] == ["pixel_accuracy", "mean_iou"]


def test_segmentation_metrics_sets():
    names = [m.name for m in segmentation_metrics(1)]
    assert names == ["pixel_accuracy", "mean_iou", "mae"]
    assert [m.name for m in segmentation_metrics(1, from_logits=True)] == [
        "pixel_accuracy",
        "mean_iou",
    ]
    nested = segmentation_metrics(1, num_outputs=3)
    assert len(nested) == 3 and nested[1] is None and len(nested[0]) == 3
    with pytest.raises(ValueError, match="num_classes"):
        segmentation_metrics(0)


def _numpy_accuracy_and_mean_iou(target, logits, num_classes, ignore=255):
    truth = target.reshape(-1)
    predicted = logits.argmax(-1).reshape(-1)
    valid = truth != ignore
    truth, predicted = truth[valid], predicted[valid]
    matrix = np.zeros((num_classes, num_classes))
    np.add.at(matrix, (truth, predicted), 1)
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    return np.mean(truth == predicted), np.mean(np.diag(matrix)[union > 0] / union[union > 0])


def _batch_with_ignored_pixels():
    logits = RNG.normal(size=(2, 6, 6, 3)).astype("float32")
    target = RNG.integers(0, 3, size=(2, 6, 6, 1)).astype("int32")
    target[0, :3] = 255
    target[1, :, :2] = 255
    return target, logits


def test_multiclass_metrics_leave_ignored_pixels_out():
    target, logits = _batch_with_ignored_pixels()
    accuracy, mean_iou = segmentation_metrics(num_classes=3)  # ignore_label=255 by default
    accuracy.update_state(target, logits)
    mean_iou.update_state(target, logits)
    expected_accuracy, expected_iou = _numpy_accuracy_and_mean_iou(target, logits, 3)
    assert float(accuracy.result()) == pytest.approx(expected_accuracy, abs=1e-6)
    assert float(mean_iou.result()) == pytest.approx(expected_iou, abs=1e-5)
    # Keras' own accuracy counts the ignored pixels as wrong.
    plain = keras.metrics.SparseCategoricalAccuracy()
    plain.update_state(target, logits)
    assert float(plain.result()) < expected_accuracy - 0.1


def test_pixel_accuracy_combines_ignored_pixels_with_sample_weights():
    target, logits = _batch_with_ignored_pixels()
    weights = RNG.uniform(0, 2, size=target.shape).astype("float32")
    metric = SparsePixelAccuracy(ignore_class=255)
    metric.update_state(target, logits, sample_weight=weights)
    kept = np.where(target == 255, 0.0, weights)[..., 0]
    correct = logits.argmax(-1) == target[..., 0]
    assert float(metric.result()) == pytest.approx((correct * kept).sum() / kept.sum(), abs=1e-6)
    # Targets without the channel axis work too; a batch of ignored pixels alone changes nothing.
    metric.reset_state()
    metric.update_state(target[..., 0], logits)
    before = float(metric.result())
    metric.update_state(np.full_like(target, 255), logits)
    assert float(metric.result()) == pytest.approx(before, abs=1e-7)


def test_ignore_label_none_or_another_value():
    accuracy, mean_iou = segmentation_metrics(3, ignore_label=None)
    assert accuracy.ignore_class is None and mean_iou.ignore_class is None
    accuracy, mean_iou = segmentation_metrics(3, ignore_label=9, num_outputs=2)[0]
    assert accuracy.ignore_class == 9 and mean_iou.ignore_class == 9


def test_compiled_multiclass_metrics_and_loss_skip_ignored_pixels():
    target, logits = _batch_with_ignored_pixels()
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
        metrics=segmentation_metrics(3),
    )
    results = model.evaluate(logits, target, verbose=0, return_dict=True)
    expected_accuracy, expected_iou = _numpy_accuracy_and_mean_iou(target, logits, 3)
    assert results["pixel_accuracy"] == pytest.approx(expected_accuracy, abs=1e-6)
    assert results["mean_iou"] == pytest.approx(expected_iou, abs=1e-5)


@pytest.mark.parametrize(
    "metric",
    [
        BinaryMeanIoU(threshold=0.3, from_logits=True, target_threshold=0.6, target_class_ids=(1,)),
        BinaryPixelAccuracy(threshold=0.3, from_logits=True, target_threshold=0.6),
    ],
)
def test_config_round_trip(metric):
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()
    assert restored.threshold == 0.3 and restored.from_logits and restored.target_threshold == 0.6


def test_sparse_pixel_accuracy_config_round_trip():
    metric = SparsePixelAccuracy(ignore_class=7, name="acc")
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is SparsePixelAccuracy
    assert restored.ignore_class == 7 and restored.name == "acc"


def test_fit_with_deep_supervision_and_keras_file(tmp_path):
    inputs = keras.Input((8, 8, 3))
    fused = keras.layers.Conv2D(1, 1, activation="sigmoid", name="fused")(inputs)
    side = keras.layers.Conv2D(1, 1, activation="sigmoid", name="side")(inputs)
    model = keras.Model(inputs, [fused, side])
    model.compile(
        optimizer="adam",
        loss=["binary_crossentropy"] * 2,
        metrics=segmentation_metrics(1, num_outputs=2),
    )
    x = RNG.uniform(size=(4, 8, 8, 3)).astype("float32")
    y = RNG.uniform(size=(4, 8, 8, 1)).astype("float32")
    history = model.fit(x, (y, y), epochs=1, batch_size=2, verbose=0)
    metric_keys = [k for k in history.history if k.endswith(("mean_iou", "pixel_accuracy", "mae"))]
    assert len(metric_keys) == 3  # output 0 only
    assert all(0.0 <= history.history[k][0] <= 1.0 for k in metric_keys)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0)[0], model.predict(x, verbose=0)[0])


def test_import_under_jax_brings_no_tensorflow():
    # Keras itself imports matplotlib.pyplot; seglab.metrics must add neither that nor TF.
    code = textwrap.dedent(
        """
        import sys
        import keras
        before = set(sys.modules)
        import numpy as np
        import seglab.metrics as metrics
        added = {m.split(".")[0] for m in set(sys.modules) - before}
        assert keras.backend.backend() == "jax"
        assert not any(m.startswith("tensorflow") for m in sys.modules), "tensorflow imported"
        assert "matplotlib" not in added, "seglab.metrics imported matplotlib"
        metric = metrics.BinaryMeanIoU()
        metric.update_state(np.array([1.0, 0.8, 0.0, 0.2]), np.array([0.9, 0.2, 0.1, 0.7]))
        print(round(float(metric.result()), 6))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # truth [1,1,0,0], predicted [1,0,0,1]: IoU 1/3 for each class
    assert done.stdout.strip() == "0.333333"
