"""The backup callback and resumable_callbacks of seglab.training.callbacks."""

import csv
import json

import keras
import numpy as np

from seglab import training
from seglab.training.loop_test import tiny_model


def _epochs(path):
    with open(path, newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_backup_is_written_at_epoch_ends_and_every_n_steps(tmp_path):
    backup_dir = tmp_path / "backup"
    saves = []

    class Recorder(training.Backup):
        def save(self, resume_at):
            super().save(resume_at)
            saves.append(json.loads((backup_dir / "training_metadata.json").read_text())["epoch"])

    model = tiny_model(2, (8, 8, 3))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.zeros((12, 8, 8, 3), "float32")
    masks = np.zeros((12, 8, 8, 1), "int32")
    callback = Recorder(backup_dir, every=2, delete_when_done=False)
    model.fit(images, masks, batch_size=4, epochs=2, callbacks=[callback], verbose=0)
    # 3 steps an epoch: a save after step 2, one at the epoch end (recorded as the next epoch).
    assert saves == [0, 1, 1, 2]
    assert (backup_dir / "latest.weights.h5").is_file()

    # A new model of the same build resumes with those weights, at the recorded epoch.
    saved = [keras.ops.convert_to_numpy(w) for w in model.weights]
    again = tiny_model(2, (8, 8, 3))
    again.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started, epochs = [], []
    seen = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: started.extend(
            keras.ops.convert_to_numpy(w) for w in again.weights
        ),
        on_epoch_begin=lambda epoch, logs: epochs.append(epoch),
    )
    restored = training.Backup(backup_dir, every=2)
    history = again.fit(
        images, masks, batch_size=4, epochs=3, callbacks=[restored, seen], verbose=0
    )
    for before, after in zip(saved, started, strict=True):
        np.testing.assert_array_equal(before, after)
    assert epochs == [2] and len(history.history["loss"]) == 1
    assert not backup_dir.exists(), "delete_when_done (the default) removes the finished backup"


_NOTEBOOK_STYLE_RUN = """
import sys, time
import keras, numpy as np
from seglab import training
from seglab.models.heads import SegmentationOutput
from seglab.models.preprocessing import image_input

keras.utils.set_random_seed(0)
inputs, x = image_input((8, 8, 3), "unit")
model = keras.Model(inputs, SegmentationOutput("sigmoid")(keras.layers.Conv2D(1, 3, padding="same")(x)))
model.compile("adam", loss="binary_crossentropy", metrics=["mae"])
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
masks = (images[..., :1] > 128).astype("float32")

class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print("finished epoch", epoch + 1, flush=True)
        time.sleep(float(sys.argv[2]))

model.fit(images, masks, validation_data=(images, masks), epochs=6, batch_size=4, verbose=0,
          callbacks=[*training.resumable_callbacks(sys.argv[1], monitor="val_mae", mode="min"), Slow()])
print("done", flush=True)
"""


def test_a_killed_notebook_style_fit_resumes_when_the_cell_runs_again(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "drive"
    command = [sys.executable, "-c", _NOTEBOOK_STYLE_RUN, str(out)]
    first = subprocess.Popen([*command, "3"], stdout=subprocess.PIPE, text=True)
    try:
        for line in first.stdout:
            if line.startswith("finished epoch 2"):
                first.kill()  # the session disconnects during epoch 3
                break
    finally:
        first.kill()
        first.wait(timeout=60)
        first.stdout.close()
    assert (out / "backup").is_dir() and (out / "best.keras").is_file()
    second = subprocess.run([*command, "0"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    epochs = [int(line.split()[-1]) for line in second.stdout.splitlines() if "finished" in line]
    assert epochs == [3, 4, 5, 6], second.stdout  # the first two epochs are not run again
    assert _epochs(out / "history.csv") == [0, 1, 2, 3, 4, 5]
    # best.keras is the epoch with the lowest val_mae over both sessions.
    history = training.dedupe_history(out / "history.csv")
    best = min(float(row["val_mae"]) for row in history)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    masks = (images[..., :1] > 128).astype("float32")
    predicted = training.load_model(out / "best.keras").predict(images, verbose=0)
    assert abs(float(np.mean(np.abs(predicted - masks))) - best) < 1e-4
