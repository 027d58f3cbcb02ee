"""train() of seglab.training with a tiny stand-in model: the run folder, resume, NaN, Ctrl-C."""

import csv
import json

import keras
import numpy as np
import pytest

from seglab import training
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input
from seglab.recipes import Recipe


def tiny_model(num_classes, input_shape, normalization="unit", weights=None):
    """Two convolutions: enough to learn the synthetic shapes a little, fast on a CPU."""
    inputs, x = image_input(input_shape, normalization)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, SegmentationOutput()(keras.layers.Conv2D(num_classes, 1)(x)))


def nan_model(num_classes, input_shape, normalization="unit", weights=None):
    inputs, x = image_input(input_shape, normalization)
    x = keras.layers.Conv2D(num_classes, 1)(x)
    return keras.Model(inputs, SegmentationOutput()(keras.layers.Rescaling(float("nan"))(x)))


def tiny_recipe(**changes):
    settings = dict(
        name="tiny",
        title="stand-in",
        task="multiclass",
        model=tiny_model,
        dataset="paddleseg",
        num_classes=3,
        normalization="unit",
        image_size=32,
        batch_size=4,
        epochs=3,
        learning_rate=1e-2,
        max_train_images=8,
        max_val_images=4,
        augment=True,
    )
    settings.update(changes)
    return Recipe(**settings)


def _epochs(path):
    with open(path, newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_train_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = training.train(tiny_recipe(), out, synthetic=True, verbose=0, log=lambda _: None)
    for name in ("model.keras", "history.csv", "metrics.json", "config.json"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists(), "the backup is removed when the run finishes"
    assert _epochs(out / "history.csv") == [0, 1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["status"] == "finished"
    assert config["normalization"] == "unit" and config["task"] == "multiclass"
    assert config["recipe"]["epochs"] == 3 and config["run"]["seed"] == 0
    assert "keras" in config["versions"] and "description" in config["device"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_iou"] <= 1.0 and len(metrics["per_class_iou"]) == 3
    assert result.metrics["mean_iou"] == metrics["mean_iou"]
    # seglab evaluate's evaluation is train's: the same numbers from the saved run.
    evaluated = training.evaluate_run(out)
    assert evaluated["mean_iou"] == pytest.approx(metrics["mean_iou"], abs=1e-6)
    assert json.loads((out / "evaluation.json").read_text()) == evaluated
    # The saved model loads without the stand-in's code and predicts like the trained one.
    images = np.random.default_rng(0).uniform(0, 255, size=(1, 32, 32, 3)).astype("float32")
    loaded = training.load_model(out / "model.keras")
    np.testing.assert_allclose(
        loaded.predict_on_batch(images), result.model.predict_on_batch(images), atol=1e-5
    )


def test_same_seed_same_history(tmp_path):
    recipe = tiny_recipe(epochs=1)
    first = training.train(
        recipe, tmp_path / "a", synthetic=True, seed=3, verbose=0, log=lambda _: None
    )
    second = training.train(
        recipe, tmp_path / "b", synthetic=True, seed=3, verbose=0, log=lambda _: None
    )
    assert first.history[0]["loss"] == pytest.approx(second.history[0]["loss"], rel=1e-4)


def test_finished_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(epochs=1)
    training.train(recipe, out, synthetic=True, verbose=0, log=lambda _: None)
    before = (out / "model.keras").stat().st_mtime_ns
    with pytest.raises(training.RunExistsError, match="finished run.*--overwrite"):
        training.train(recipe, out, synthetic=True, verbose=0, log=lambda _: None)
    assert (out / "model.keras").stat().st_mtime_ns == before
    training.train(recipe, out, synthetic=True, overwrite=True, verbose=0, log=lambda _: None)
    assert _epochs(out / "history.csv") == [0]


def test_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(training.RunExistsError, match="holds no seglab run"):
        training.train(tiny_recipe(), tmp_path, synthetic=True, overwrite=True, verbose=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    recipe = tiny_recipe(model=nan_model, epochs=2)
    with pytest.raises(
        training.NonFiniteLossError, match=r"loss became nan at epoch 1, step 1.*learning rate"
    ):
        training.train(recipe, tmp_path / "run", synthetic=True, verbose=0, log=lambda _: None)
    assert not (tmp_path / "run" / "model.keras").exists()


class _CtrlC(keras.callbacks.Callback):
    """Presses Ctrl-C at the first step of the given epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.at_epoch = epoch
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == self.at_epoch and batch == 1:
            raise KeyboardInterrupt


def test_ctrl_c_leaves_a_checkpoint_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(epochs=3)
    with pytest.raises(training.TrainingInterrupted, match="Run the same command again"):
        training.train(
            recipe, out, synthetic=True, verbose=0, callbacks=[_CtrlC(1)], log=lambda _: None
        )
    assert (out / "interrupted.keras").is_file()
    assert training.load_model(out / "interrupted.keras").output_shape == (None, 32, 32, 3)
    assert json.loads((out / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert training.run_status(out) == "unfinished"

    messages = []
    result = training.train(recipe, out, synthetic=True, verbose=0, log=messages.append)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 2
    assert any("Resuming" in message and "epoch 2 of 3" in message for message in messages)
    assert _epochs(out / "history.csv") == [0, 1, 2]
    assert not (out / "interrupted.keras").exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(training.TrainingInterrupted):
        training.train(
            tiny_recipe(), out, synthetic=True, verbose=0, callbacks=[_CtrlC(0)], log=lambda _: None
        )
    with pytest.raises(training.RunExistsError, match="batch_size: 4 then, 2 now"):
        training.train(tiny_recipe(batch_size=2), out, synthetic=True, verbose=0)


def test_run_stopped_during_evaluation_is_evaluated_not_retrained(tmp_path, monkeypatch):
    import seglab.metrics

    out = tmp_path / "run"
    recipe = tiny_recipe(epochs=2)
    real_evaluate = seglab.metrics.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(seglab.metrics, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train(recipe, out, synthetic=True, verbose=0, log=lambda _: None)
    assert (out / "model.keras").is_file() and not (out / "backup").exists()
    assert training.run_status(out) == "unfinished"
    trained = (out / "model.keras").stat().st_mtime_ns

    monkeypatch.setattr(seglab.metrics, "evaluate", real_evaluate)
    messages = []
    result = training.train(recipe, out, synthetic=True, verbose=0, log=messages.append)
    assert any("training had finished" in m for m in messages)
    assert not any(m.startswith("Training") for m in messages)
    assert (out / "model.keras").stat().st_mtime_ns == trained
    assert _epochs(out / "history.csv") == [0, 1]
    assert training.run_status(out) == "finished" and "mean_iou" in result.metrics
