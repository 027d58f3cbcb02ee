"""Headless training of a recipe into a run folder: resumable, seeded, safe to interrupt.

``train(recipe, out_dir, data_dir=...)`` writes into ``out_dir``:

- ``config.json``: the resolved recipe, the arguments, versions and device, and ``status``
  (``"running"`` until the run has finished, then ``"finished"``);
- ``history.csv``: one row per epoch (Keras ``CSVLogger``, appended across restarts, each
  epoch kept once);
- ``backup/``: Keras ``BackupAndRestore`` state, written every ``backup_every`` steps and at
  the end of every epoch, removed when the run finishes;
- ``model.keras`` and ``metrics.json`` (validation metrics from ``seglab.metrics.evaluate``)
  at the end;
- ``interrupted.keras`` when the run was stopped with Ctrl-C.

Running the same command again after a crash, a kill or Ctrl-C resumes from ``backup/``: a
killed epoch restarts from its beginning with the weights of the last backup (Keras 3 records
the epoch, not the step, of a mid-epoch backup). A finished run folder is never overwritten
unless ``overwrite=True``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from seglab.recipes.recipes import DEFAULT, Recipe

CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
BACKUP = "backup"
INTERRUPTED = "interrupted.keras"
# Everything a run writes: the only files overwrite=True deletes.
SYNTHETIC_DATA = "synthetic_data"
RUN_FILES = (
    CONFIG,
    HISTORY,
    METRICS,
    MODEL,
    BACKUP,
    INTERRUPTED,
    "evaluation.json",
    SYNTHETIC_DATA,
)

# Settings that may change when a run is resumed; anything else must match the backup.
_RESUMABLE_CHANGES = ("epochs",)


class TrainingError(RuntimeError):
    """A run could not start or stopped early; the message says why and what to do."""


class RunExistsError(TrainingError):
    """The output folder holds a finished run (or files that are not a run)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was written and the run can be resumed."""


# ----------------------------------------------------------------------------------------------
# Device


@dataclasses.dataclass
class DeviceSetup:
    """How training uses the machine."""

    backend: str
    gpus: list[str]
    mixed_precision: bool
    jit_compile: bool | str
    strategy: Any = None

    @property
    def description(self) -> str:
        cpu = platform.processor() or platform.machine()
        cores = os.cpu_count()
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            pass
        gpus = f", {len(self.gpus)} GPU(s): {', '.join(self.gpus)}" if self.gpus else ", no GPU"
        return f"{platform.system()} {cpu}, {cores} CPU core(s){gpus}; Keras backend {self.backend}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "gpus": self.gpus,
            "mixed_precision": self.mixed_precision,
            "jit_compile": self.jit_compile,
            "distributed": self.strategy is not None,
            "description": self.description,
        }


def _gpu_names() -> list[str]:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            names.append(details.get("device_name", device.name))
        return names
    if backend == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform == "gpu"]
    return []


def _multi_worker_cluster() -> bool:
    """True when ``TF_CONFIG`` describes a cluster of more than one worker."""
    import json

    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except (ValueError, AttributeError):
        raise TrainingError("TF_CONFIG is not valid JSON with a 'cluster' entry") from None
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")) > 1


def setup_device(
    mixed_precision: bool | str = "auto", jit_compile: bool | str = "auto"
) -> DeviceSetup:
    """Choose mixed precision, XLA and distribution for this machine.

    With ``"auto"``, mixed precision (``mixed_float16``) and XLA are used only when a GPU is
    present, and ``tf.distribute.MirroredStrategy`` when several are, or
    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers (TensorFlow
    backend; under JAX the model runs as is). Sets the global dtype policy: call before building models.
    """
    backend = keras.backend.backend()
    gpus = _gpu_names()
    use_mixed = bool(gpus) if mixed_precision == "auto" else bool(mixed_precision)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    if backend == "tensorflow":
        jit = bool(gpus) if jit_compile == "auto" else bool(jit_compile)
    else:
        jit = jit_compile
    strategy = None
    if backend == "tensorflow" and _multi_worker_cluster():
        import tensorflow as tf

        # TF_CONFIG names several workers: every worker runs the same command (README).
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif backend == "tensorflow" and len(gpus) > 1:
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
    return DeviceSetup(backend, gpus, use_mixed, jit, strategy)


def _float32_outputs(model):
    """Under mixed precision the loss must see float32 outputs; wrap the model if it does not."""
    outputs = model.outputs
    if all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs):
        return model
    cast = [
        keras.layers.Activation("linear", dtype="float32", name=f"float32_{i}")(o)
        for i, o in enumerate(outputs)
    ]
    return keras.Model(model.inputs, cast if len(cast) > 1 else cast[0], name=model.name)


# ----------------------------------------------------------------------------------------------
# Callbacks


class _Backup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that saves every ``save_freq`` steps *and* at the end of every
    epoch (Keras saves at epoch ends only with ``save_freq="epoch"``, so without this a kill
    between an epoch's end and the next step backup would redo the finished epoch)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()
            self._batches_seen_since_last_saving = 0

    def save_now(self):
        self._save_model()


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise ``NonFiniteLossError`` at the first step whose loss is NaN or infinite.

    Placed before the backup callback, so the weights that produced it are never backed up."""

    def __init__(self, out_dir: Path):
        super().__init__()
        self.out_dir = out_dir
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"training stopped: the loss became {float(loss)} at epoch {self.epoch + 1}, "
                f"step {batch + 1}. Lower the learning rate (--learning-rate) or check the data "
                f"(seglab check DATA_DIR). The last good weights are in {self.out_dir / BACKUP}."
            )


# ----------------------------------------------------------------------------------------------
# The run folder


def run_status(out_dir) -> str:
    """``"new"`` (missing or empty), ``"finished"``, ``"unfinished"`` or ``"foreign"`` (files
    that are not a seglab run)."""
    out = Path(out_dir)
    if not out.exists() or not any(out.iterdir()):
        return "new"
    config = _read_config(out)
    if config is None:
        # A run that failed before writing its config leaves only its own files.
        ours = all(path.name in RUN_FILES or path.name.endswith(".tmp") for path in out.iterdir())
        return "new" if ours else "foreign"
    return "finished" if config.get("status") == "finished" else "unfinished"


def _read_config(out: Path) -> dict | None:
    try:
        return json.loads((out / CONFIG).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, value) -> None:
    # Write then rename: a kill never leaves half a file.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def _clear_run(out: Path) -> None:
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _versions() -> dict[str, str]:
    import numpy

    import seglab

    versions = {
        "python": platform.python_version(),
        "seglab": seglab.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return versions


def _settings_differ(old: dict, new: dict) -> list[str]:
    differences = []
    for key in sorted(set(old) | set(new)):
        if key in _RESUMABLE_CHANGES or key in ("sources", "reference", "title"):
            continue
        if old.get(key) != new.get(key):
            differences.append(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now")
    return differences


def _backup_epoch(out: Path) -> int | None:
    try:
        return int(json.loads((out / BACKUP / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def dedupe_history(path) -> list[dict[str, str]]:
    """Keep the last row of each epoch in a CSVLogger file (a restarted epoch is logged
    twice), sorted by epoch; rewrite the file and return the rows."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return []
    fields = list(rows[0].keys())
    by_epoch = {}
    for row in rows:
        try:
            epoch = int(float(row["epoch"]))
        except (TypeError, ValueError):
            continue  # a line cut short by a kill
        if None not in row.values():
            by_epoch[epoch] = row
    ordered = [by_epoch[epoch] for epoch in sorted(by_epoch)]
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(ordered)
    os.replace(temporary, path)
    return ordered


# ----------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class RunResult:
    out_dir: Path
    model: Any
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    resumed_from_epoch: int | None
    epochs_run: int


def _number(text: str):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value


def _finite_json(value):
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train(
    recipe: Recipe,
    out_dir,
    *,
    data_dir=None,
    synthetic: bool = False,
    download: bool = True,
    seed: int = 0,
    weights=DEFAULT,
    overwrite: bool = False,
    verbose: int | str = 1,
    backup_every: int | None = None,
    mixed_precision: bool | str = "auto",
    jit_compile: bool | str = "auto",
    arguments: dict | None = None,
    callbacks: list | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train ``recipe`` into ``out_dir`` (see the module docstring for what is written).

    Args:
        recipe: a ``seglab.recipes.Recipe`` (e.g. ``seglab.recipes.get("unet-pets")``).
        out_dir: the run folder. A new or empty folder starts a run; an unfinished run is
            resumed; a finished one raises ``RunExistsError`` unless ``overwrite``.
        data_dir: the dataset folder (``None`` downloads the dataset when the recipe can).
        synthetic: train on a small synthetic set written into ``out_dir/synthetic_data``.
        seed: seeds Keras, NumPy, Python and the input pipeline.
        weights: ``"default"`` (the recipe's), ``"imagenet"``, ``None`` or a weights file.
        verbose: Keras ``fit`` verbosity (1: progress bar).
        backup_every: steps between backups; default a quarter of an epoch.
        arguments: recorded in ``config.json`` (the command-line arguments).
        callbacks: more Keras callbacks for ``fit`` (after the run's own).
        log: where progress messages go (default: stderr).

    Raises:
        RunExistsError, NonFiniteLossError, TrainingInterrupted (all ``TrainingError``);
        ``seglab.data.DataError`` for bad data, before training starts.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    out = Path(out_dir)
    status = run_status(out)
    if status == "foreign":
        raise RunExistsError(
            f"{out}: the folder is not empty and holds no seglab run (no {CONFIG}); choose "
            "another --out"
        )
    if status == "finished" and not overwrite:
        raise RunExistsError(
            f"{out}: holds a finished run ({MODEL}, {METRICS}); pass --overwrite to replace it "
            "or choose another --out"
        )
    if (overwrite or status == "new") and out.is_dir():
        # Only the run's own files: leftovers of a run that failed early, or the replaced run.
        _clear_run(out)
        status = "new"

    settings = recipe.to_dict()
    weights_setting = recipe.pretrained if weights == DEFAULT else weights
    run_setup = {
        "seed": seed,
        "weights": weights_setting,
        "synthetic": synthetic,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
    }
    resumed_from = None
    already_trained = False
    if status == "unfinished":
        previous = _read_config(out) or {}
        differences = _settings_differ(previous.get("recipe", {}), settings)
        differences += _settings_differ(previous.get("run", {}), run_setup)
        if differences:
            raise RunExistsError(
                f"{out}: holds an unfinished run with other settings ("
                + "; ".join(differences)
                + "); rerun with the same settings to resume it, pass --overwrite to start "
                "again, or choose another --out"
            )
        resumed_from = _backup_epoch(out)
        if previous.get("status") == "trained" and (out / MODEL).is_file():
            # Training finished but the evaluation did not: only evaluate.
            if previous["recipe"].get("epochs") != settings["epochs"]:
                raise RunExistsError(
                    f"{out}: holds a model trained for {previous['recipe'].get('epochs')} epochs "
                    "whose evaluation was interrupted; rerun with the same --epochs to finish "
                    "it, or choose another --out"
                )
            resumed_from = settings["epochs"]
            already_trained = True

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    device = setup_device(mixed_precision, jit_compile)

    # Data problems surface here, before anything is built.
    if synthetic:
        data_dir = out / SYNTHETIC_DATA
    train_set, val_set = recipe.load_data(data_dir, download=download, synthetic=synthetic)
    train_ds, val_ds = recipe.make_datasets(train_set, val_set, seed=seed)

    def build():
        model = recipe.build_model(weights=weights)
        if device.mixed_precision:
            model = _float32_outputs(model)
        return recipe.compile(model, jit_compile=device.jit_compile)

    if already_trained:
        model = load_model(out / MODEL)
    elif device.strategy is not None:
        with device.strategy.scope():
            model = build()
    else:
        model = build()

    config = {
        "status": "trained" if already_trained else "running",
        "recipe": settings,
        "run": run_setup,
        "task": recipe.task,
        "normalization": recipe.normalization,
        "image_size": recipe.image_size,
        "num_classes": recipe.num_classes,
        "class_names": list(recipe.class_names or getattr(train_set, "class_names", ())),
        "train_images": len(train_set) if hasattr(train_set, "pairs") else None,
        "val_images": len(val_set) if hasattr(val_set, "pairs") else None,
        "arguments": arguments or {},
        "versions": _versions(),
        "device": device.to_dict(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    _write_json(out / CONFIG, config)

    steps = recipe.steps_per_epoch
    if steps is None and hasattr(train_set, "pairs"):
        steps_in_set = math.ceil(len(train_set) / recipe.batch_size)
    else:
        steps_in_set = steps
    if backup_every is None:
        backup_every = max(1, (steps_in_set or 4) // 4)
    # double_checkpoint: a kill while the weights file is being written leaves the previous one.
    backup = _Backup(
        str(out / BACKUP),
        save_freq=int(backup_every),
        double_checkpoint=True,
        delete_checkpoint=False,
    )
    extra_callbacks = list(callbacks or [])
    callbacks = [
        _StopOnNonFiniteLoss(out),
        # The CSV row of an epoch is written before its backup: a kill in between repeats
        # the row, never loses it (dedupe_history keeps the last).
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
        backup,
        *extra_callbacks,
    ]

    if already_trained:
        log(f"{out}: training had finished; evaluating {out / MODEL}")
    else:
        if resumed_from is not None:
            log(f"Resuming {out} from {out / BACKUP}: epoch {resumed_from + 1} of {recipe.epochs}")
        count = len(train_set) if hasattr(train_set, "pairs") else "?"
        log(f"Training {recipe.name} on {count} images ({device.description})")
        try:
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=recipe.epochs,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # make_dataset already shuffles the training set every epoch
            )
        except KeyboardInterrupt:
            model.save(out / INTERRUPTED)
            try:
                backup.save_now()
            except Exception:  # noqa: BLE001 - the .keras file above is enough to keep the work
                pass
            raise TrainingInterrupted(
                f"interrupted: the model so far is in {out / INTERRUPTED} and the training state "
                f"in {out / BACKUP}. Run the same command again to resume."
            ) from None
        model.save(out / MODEL)
        # The backup goes only once model.keras is safe and the config says so.
        config["status"] = "trained"
        _write_json(out / CONFIG, config)
        shutil.rmtree(out / BACKUP, ignore_errors=True)
    history = [
        {key: _number(value) for key, value in row.items()} for row in dedupe_history(out / HISTORY)
    ]

    from seglab.metrics import evaluate

    metrics = _finite_json(
        evaluate(
            model,
            recipe.make_eval_dataset(val_set),
            recipe.task,
            num_classes=recipe.num_classes if recipe.task == "multiclass" else None,
            class_names=config["class_names"] or None,
        )
    )
    _write_json(out / METRICS, metrics)
    if (out / INTERRUPTED).exists():
        (out / INTERRUPTED).unlink()
    config.update(
        status="finished",
        finished=datetime.datetime.now().isoformat(timespec="seconds"),
        epochs_completed=len(history),
    )
    _write_json(out / CONFIG, config)
    first_epoch = resumed_from or 0
    return RunResult(
        out, model, history, metrics, resumed_from, max(0, recipe.epochs - first_epoch)
    )


def load_run(run_dir):
    """``(model, config)`` of a finished run folder (or ``interrupted.keras`` of a stopped one)."""
    out = Path(run_dir)
    config = _read_config(out)
    if config is None:
        raise TrainingError(f"{out}: not a seglab run folder (no readable {CONFIG})")
    path = out / MODEL
    if not path.is_file():
        path = out / INTERRUPTED
    if not path.is_file():
        raise TrainingError(f"{out}: the run has no {MODEL} yet (status: {config.get('status')})")
    return load_model(path), config


# Modules whose import registers the custom objects a saved seglab model may use.
_CUSTOM_OBJECT_MODULES = (
    "seglab.models.blocks",
    "seglab.models.unet.unet",
    "seglab.models.deeplabv3plus.deeplabv3plus",
    "seglab.models.basnet.basnet",
    "seglab.models.u2net.u2net",
    "seglab.losses.basnet",
    "seglab.metrics.training",
)


def load_model(path):
    """A ``.keras`` file of a seglab model, uncompiled (for prediction and evaluation)."""
    import importlib

    for module in _CUSTOM_OBJECT_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    return keras.saving.load_model(path, compile=False)
