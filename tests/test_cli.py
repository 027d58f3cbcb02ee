"""The ``seglab`` command line end to end, in smoke mode, on the course's samples.

Most tests call ``seglab.cli.main`` in this process (TensorFlow is imported once); the resume
test runs ``python -m seglab.cli`` in a subprocess so that it can be killed with SIGKILL.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglab import cli


def _data(sample_data, name, tmp_path_factory, kind):
    """The sample dataset, or a synthetic one of the same kind when the samples are absent."""
    try:
        return sample_data(name), []
    except pytest.skip.Exception:
        return tmp_path_factory.mktemp(kind) / "data", ["--synthetic"]


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clear_error(err, *fragments):
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("seglab: error:")]
    assert lines, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def pets_run(sample_data, tmp_path_factory):
    """One smoke run of unet-pets, shared by the train, evaluate and predict tests."""
    data, extra = _data(sample_data, "oxford_pets_sample", tmp_path_factory, "pets")
    out = tmp_path_factory.mktemp("runs") / "pets"
    argv = [
        "train",
        "unet-pets",
        "--smoke",
        "--encoder-weights",
        "none",
        "--out",
        str(out),
        "--verbose",
        "0",
    ]
    argv += ["--data-dir", str(data)] + extra
    code = cli.main(argv)
    return {"code": code, "out": out, "data": data, "extra": extra, "argv": argv}


def test_recipes_lists_every_recipe(capsys):
    code, out, _ = run(["recipes"], capsys)
    assert code == 0
    for name in ("unet-pets", "deeplabv3plus-cihp", "basnet-duts", "u2net-sludge", "u2netp-sludge"):
        assert name in out


def test_train_smoke_writes_the_run_folder(pets_run):
    assert pets_run["code"] == 0
    out = pets_run["out"]
    for name in ("model.keras", "history.csv", "metrics.json", "config.json"):
        assert (out / name).is_file(), name
    with open(out / "history.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0"]
    config = json.loads((out / "config.json").read_text())
    assert config["status"] == "finished"
    assert config["image_size"] == 64 and config["normalization"] == "mobilenet"
    assert config["arguments"]["smoke"] is True and config["run"]["encoder_weights"] is None
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["per_class_iou"]) == 3 and 0 <= metrics["pixel_accuracy"] <= 1


def test_finished_run_is_not_overwritten(pets_run, capsys):
    before = (pets_run["out"] / "model.keras").stat().st_mtime_ns
    code, _, err = run(pets_run["argv"], capsys)
    assert code == 1
    assert_clear_error(err, "finished run", "--overwrite")
    assert (pets_run["out"] / "model.keras").stat().st_mtime_ns == before


def test_evaluate_prints_a_table_and_writes_json(pets_run, capsys):
    argv = ["evaluate", pets_run["out"], "--data-dir", pets_run["data"], *pets_run["extra"]]
    argv += ["--output", pets_run["out"] / "eval-test.json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    results = json.loads((pets_run["out"] / "eval-test.json").read_text())
    assert {"mean_iou", "per_class_iou", "pixel_accuracy"} <= set(results)
    assert "mean IoU" in out and "pixel accuracy" in out
    # The same model and data as the run's own metrics.json.
    saved = json.loads((pets_run["out"] / "metrics.json").read_text())
    assert results["mean_iou"] == pytest.approx(saved["mean_iou"], abs=1e-6)


def test_predict_writes_masks_at_the_original_size(pets_run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    sizes = {
        "rgba.png": (37, 53),
        "gray.png": (100, 61),
        "odd.jpg": (17, 200),
        "deep.png": (40, 30),
    }
    Image.fromarray(rng.integers(0, 255, (37, 53, 4), dtype=np.uint8), "RGBA").save(
        images / "rgba.png"
    )
    Image.fromarray(rng.integers(0, 255, (100, 61), dtype=np.uint8), "L").save(images / "gray.png")
    Image.fromarray(rng.integers(0, 255, (17, 200, 3), dtype=np.uint8)).save(images / "odd.jpg")
    Image.fromarray(rng.integers(0, 65535, (40, 30), dtype=np.uint16)).save(images / "deep.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    single = tmp_path / "single.bmp"
    Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)).save(single)
    sizes["single.bmp"] = (9, 11)

    out = tmp_path / "masks"
    code, stdout, err = run(["predict", pets_run["out"], images, single, "--out", out], capsys)
    assert code == 1, "a file failed, so the exit status is not 0"
    assert "5 mask(s) written, 1 file(s) failed" in stdout
    assert "broken.png" in stdout and "Traceback" not in err
    for name, (height, width) in sizes.items():
        stem = Path(name).stem
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        assert mask.shape == (height, width) and mask.dtype == np.uint8, name
        assert set(np.unique(mask)) <= {0, 1, 2}, name
        overlay = Image.open(out / f"{stem}_overlay.png")
        assert overlay.size == (width, height) and overlay.mode == "RGB"
    assert not (out / "broken_mask.png").exists()


def test_predict_needs_nothing_but_the_model_file(pets_run, tmp_path, capsys):
    """The .keras file alone: its normalisation and its outputs travel inside it."""
    lone = tmp_path / "lone.keras"
    lone.write_bytes((pets_run["out"] / "model.keras").read_bytes())
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    code, _, err = run(["predict", lone, image, "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "m" / "a_mask.png")).shape == (20, 30)


def test_a_run_of_seglab_0_1_says_what_to_do(pets_run, tmp_path, capsys):
    import shutil

    import keras

    old = tmp_path / "old-run"
    shutil.copytree(pets_run["out"], old)
    inputs = keras.Input((64, 64, 3))
    legacy = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))  # no preprocessing inside
    legacy.save(old / "model.keras")
    code, _, err = run(["predict", old, tmp_path / "x.png", "--out", tmp_path / "m"], capsys)
    assert code == 1
    assert_clear_error(err, "seglab 0.1", "--overwrite", "normalization 'mobilenet'")


def test_check_a_good_dataset(sample_data, capsys):
    code, out, _ = run(["check", sample_data("microscopy_sample"), "--num-classes", "2"], capsys)
    assert code == 0
    assert "65 pair(s) checked, no problems" in out


def test_check_reports_every_problem(tmp_path, capsys):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / f"{stem}.jpg")
    (tmp_path / "images" / "c.jpg").write_bytes(b"not a picture")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / "a.png")
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(tmp_path / "masks" / "b.png")  # wrong size
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / "c.png")
    code, out, err = run(["check", tmp_path], capsys)
    assert code == 1
    assert "2 problem(s)" in out and "c.jpg" in out and "b.png" in out, out + err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, fragments, expected_code",
    [
        (
            ["train", "no-such-recipe", "--smoke"],
            ["unknown recipe 'no-such-recipe'", "unet-pets"],
            1,
        ),
        (
            ["train", "unet-pets", "--data-dir", "/no/such/folder"],
            ["/no/such/folder", "not found"],
            1,
        ),
        (["train", "unet-pets", "--epochs", "many"], ["--epochs", "whole number"], 2),
        (["train", "unet-pets", "--encoder-weights", "/no/weights.h5"], ["/no/weights.h5"], 2),
        (
            ["train", "u2netp-sludge", "--smoke", "--weights", "/no/u2netp.pth", "--synthetic"],
            ["/no/u2netp.pth"],
            1,
        ),
        (["evaluate", "/no/such/run"], ["/no/such/run", "not found"], 1),
        (["predict", "/no/model.keras", "x.png", "--out", "/tmp/x"], ["/no/model.keras"], 1),
        (["check", "/no/such/data"], ["/no/such/data"], 1),
        (["frobnicate"], ["invalid choice"], 2),
    ],
)
def test_bad_arguments_give_a_clear_message(argv, fragments, expected_code, capsys):
    code, _, err = run(argv, capsys)
    assert code == expected_code
    assert_clear_error(err, *fragments)


def test_wrong_layout_is_reported_before_training(sample_data, tmp_path, capsys):
    salient = sample_data("sod_sample")  # images/ + masks/, not the Oxford pets layout
    code, _, err = run(
        ["train", "unet-pets", "--smoke", "--data-dir", salient, "--out", tmp_path / "r"], capsys
    )
    assert code == 1
    assert_clear_error(err, str(salient))
    assert not (tmp_path / "r" / "config.json").exists()


# The command line with one more recipe: a two-layer model whose steps are slowed down to
# 0.1 s, so that a kill lands in the middle of an epoch and the run is still cheap.
_TINY_CLI = """
import sys, time
import keras
from seglab import cli, training
from seglab.recipes import recipes

from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input

def tiny_model(num_classes, input_shape, normalization="unit", weights=None):
    inputs, x = image_input(input_shape, normalization)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, SegmentationOutput()(keras.layers.Conv2D(num_classes, 1)(x)))

recipes._RECIPES["tiny"] = recipes.Recipe(
    name="tiny", title="stand-in", task="multiclass", model=tiny_model, dataset="paddleseg",
    num_classes=2, normalization="unit", image_size=32, batch_size=1, epochs=6,
    max_train_images=8, max_val_images=2)

step_end = training.StopOnNonFiniteLoss.on_train_batch_end
def slow_step_end(self, batch, logs=None):
    time.sleep(0.1)
    step_end(self, batch, logs)
training.StopOnNonFiniteLoss.on_train_batch_end = slow_step_end
sys.exit(cli.main(sys.argv[1:]))
"""


def test_killed_run_resumes_and_ends_with_the_requested_epochs(
    sample_data, tmp_path_factory, tmp_path
):
    data, extra = _data(sample_data, "microscopy_sample", tmp_path_factory, "micro")
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-c",
        _TINY_CLI,
        "train",
        "tiny",
        "--data-dir",
        str(data),
        *extra,
        "--out",
        str(out),
        "--backup-every",
        "1",
        "--verbose",
        "2",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    metadata = out / "backup" / "training_metadata.json"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # A backup after every step: the end of epoch 2 records "resume at epoch 3" (index 2),
        # and so does every step backup of epoch 3; the third such write is mid-epoch 3.
        writes_of_epoch_3 = set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                written = metadata.stat().st_mtime_ns
                if json.loads(metadata.read_text())["epoch"] >= 2:
                    writes_of_epoch_3.add(written)
                if len(writes_of_epoch_3) >= 3:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        assert process.poll() is None, (
            "the run ended before it was killed:\n" + process.stdout.read().decode()
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    assert not (out / "model.keras").exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    match = re.search(r"Resuming .* epoch (\d+) of 6", resumed.stderr)
    assert match, resumed.stderr[-3000:]
    first_epoch = int(match.group(1))
    assert first_epoch >= 3, "the epochs finished before the kill are not run again"
    # Only the remaining epochs ran in the second process (Keras prints "Epoch k/6" for each).
    epochs_run = re.findall(r"Epoch (\d+)/6", resumed.stdout + resumed.stderr)
    assert [int(e) for e in epochs_run] == list(range(first_epoch, 7))
    with open(out / "history.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1", "2", "3", "4", "5"]
    assert json.loads((out / "config.json").read_text())["status"] == "finished"
    assert not (out / "backup").exists()
