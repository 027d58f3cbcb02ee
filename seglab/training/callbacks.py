"""Callbacks that make a ``model.fit`` resumable: backups, the history, a stop at the first NaN.

``seglab.training.train`` uses them; a notebook's ``model.fit`` takes the same set from
``resumable_callbacks``.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras

from seglab.training.errors import NonFiniteLossError
from seglab.training.run_folder import BACKUP, HISTORY, dedupe_history


class Backup(keras.callbacks.Callback):
    """Keras' ``BackupAndRestore`` that also saves every ``every`` steps *and* at the end of
    every epoch (Keras saves at epoch ends only with ``save_freq="epoch"``; with a number of
    steps, a kill between an epoch's end and the next step backup would redo the finished
    epoch).

    It drives a ``keras.callbacks.BackupAndRestore(save_freq="epoch")`` through its public
    methods, so the backup folder is Keras' own and restoring (the weights, the optimizer and
    the epoch ``fit`` resumes at) is Keras' own. A backup saved part way through epoch ``e``
    is, as with Keras' step backups, the state "resume at epoch ``e``".

    Args:
        backup_dir: the folder of the backup (nothing else may write there).
        every: steps between backups; ``None``: at epoch ends only.
        delete_when_done: remove the backup when ``fit`` completes.
        restore: resume from the backup at the start of ``fit``. False in a multi-process
            run, where process 0 reads the backup itself (``seglab.distributed``).
    """

    def __init__(self, backup_dir, *, every=None, delete_when_done=True, restore=True):
        super().__init__()
        if every is not None and (isinstance(every, bool) or int(every) < 1):
            raise ValueError(f"every must be a number of steps >= 1 or None, got {every!r}")
        self.backup_dir = str(backup_dir)
        self.every = None if every is None else int(every)
        self.restore = restore
        # double_checkpoint: a kill while the weights file is being written leaves the previous.
        self._keras = keras.callbacks.BackupAndRestore(
            self.backup_dir,
            save_freq="epoch",
            double_checkpoint=True,
            delete_checkpoint=delete_when_done,
        )
        self._epoch = 0
        self._steps_since_save = 0
        self._last_step = -1

    def set_model(self, model):
        super().set_model(model)
        self._keras.set_model(model)

    def on_train_begin(self, logs=None):
        if self.restore:
            self._keras.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_step = -1

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras reports only every n-th step.
        self._steps_since_save += batch - self._last_step
        self._last_step = batch
        if self.every is not None and self._steps_since_save >= self.every:
            self.save(resume_at=self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        self.save(resume_at=epoch + 1)

    def on_train_end(self, logs=None):
        self._keras.on_train_end(logs)

    def save_now(self):
        """Back up the state reached so far in the current epoch (e.g. on Ctrl-C)."""
        self.save(resume_at=self._epoch)

    def save(self, resume_at: int):
        """Write the model's weights and optimizer state, to resume at epoch ``resume_at``."""
        from seglab.distributed import without_distribution

        self._steps_since_save = 0
        # Only process 0 saves; nothing it creates meanwhile may span the other processes.
        with without_distribution():
            # BackupAndRestore records "resume at epoch + 1" when epoch ``epoch`` ends.
            self._keras.on_epoch_end(resume_at - 1)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise ``NonFiniteLossError`` at the first step whose loss is NaN or infinite.

    Placed before the backup callback, so the weights that produced it are never backed up."""

    def __init__(self, out_dir):
        super().__init__()
        self.out_dir = Path(out_dir)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"training stopped: the loss became {float(loss)} at epoch {self.epoch + 1}, "
                f"step {batch + 1}. Lower the learning rate (the recipe's learning_rate; "
                "--learning-rate on the command line) or check the data (seglab.data.check, "
                f"or seglab check DATA_DIR). The last good weights are in "
                f"{self.out_dir / BACKUP}."
            )


def resumable_callbacks(
    out_dir, *, monitor: str | None = None, mode: str = "max", backup_every=None
):
    """Callbacks that let a notebook's ``model.fit`` survive a disconnect.

    Running the same ``model.fit(..., callbacks=resumable_callbacks(OUT_DIR, ...))`` again
    (after rebuilding and compiling the same model) resumes from ``OUT_DIR/backup`` at the
    epoch where it stopped, as ``seglab train`` does. The history goes to
    ``OUT_DIR/history.csv`` and, with ``monitor`` (e.g. ``"val_mean_iou"``), the best model
    so far to ``OUT_DIR/best.keras``. Training stops at the first NaN loss.

    Args:
        out_dir: a folder that outlives the session (in Colab: a Google Drive folder).
        monitor, mode: the validation metric that picks the best model, and whether higher
            (``"max"``) or lower (``"min"``) is better.
        backup_every: steps between backups; default: at the end of every epoch.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [
        StopOnNonFiniteLoss(out),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
        Backup(out / BACKUP, every=backup_every),
    ]
    if monitor is not None:
        # After a restart, "best" means best of the whole run, not of the epochs since.
        seen = [
            float(row[monitor])
            for row in dedupe_history(out / HISTORY)
            if row.get(monitor) not in (None, "")
        ]
        best = (max if mode == "max" else min)(seen) if seen else None
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(out / "best.keras"),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                initial_value_threshold=best,
            )
        )
    return callbacks
