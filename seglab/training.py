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

import contextlib
import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

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
    # tf.distribute.MirroredStrategy (TensorFlow) or keras.distribution.DataParallel (JAX).
    strategy: Any = None
    # seglab.distributed.Cluster of a multi-process run (JAX), else None.
    cluster: Any = None

    @property
    def replicas(self) -> int:
        """Model replicas that share every batch."""
        if self.strategy is None:
            return 1
        if self.backend == "tensorflow":
            return self.strategy.num_replicas_in_sync
        return len(self.strategy.device_mesh.devices.flatten())

    @property
    def num_processes(self) -> int:
        return 1 if self.cluster is None else self.cluster.num_processes

    @property
    def is_chief(self) -> bool:
        """True in the process that writes the run folder (the only one, or process 0)."""
        return self.cluster is None or self.cluster.is_chief

    def scope(self):
        """Build, compile and fit inside this."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    @property
    def description(self) -> str:
        cpu = platform.processor() or platform.machine()
        cores = os.cpu_count()
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            pass
        gpus = f", {len(self.gpus)} GPU(s): {', '.join(self.gpus)}" if self.gpus else ", no GPU"
        text = f"{platform.system()} {cpu}, {cores} CPU core(s){gpus}; Keras backend {self.backend}"
        if self.strategy is not None:
            text += f"; {self.replicas} replicas ({type(self.strategy).__name__})"
        if self.cluster is not None:
            text += f"; {self.cluster.describe()}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "gpus": self.gpus,
            "mixed_precision": self.mixed_precision,
            "jit_compile": self.jit_compile,
            "distributed": self.strategy is not None,
            "strategy": None if self.strategy is None else type(self.strategy).__name__,
            "replicas": self.replicas,
            "processes": self.num_processes,
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


def _multi_worker_cluster(count: bool = False) -> bool | int:
    """True when ``TF_CONFIG`` describes a cluster of more than one worker (with ``count``:
    how many)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError):
        raise TrainingError("TF_CONFIG is not valid JSON with a 'cluster' entry") from None
    return workers if count else workers > 1


def setup_device(
    mixed_precision: bool | str = "auto",
    jit_compile: bool | str = "auto",
    strategy: Any = "auto",
    cluster: Any = None,
) -> DeviceSetup:
    """Choose mixed precision, XLA and distribution for this machine.

    With ``"auto"``, mixed precision (``mixed_float16``) and XLA are used only when a GPU is
    present. Distribution (``seglab.distributed``):

    - TensorFlow backend: ``tf.distribute.MirroredStrategy`` when there are several GPUs
      (``strategy="auto"``), or the ``tf.distribute.Strategy`` given as ``strategy``.
      ``TF_CONFIG`` naming several workers is refused: Keras 3 cannot fit under
      ``MultiWorkerMirroredStrategy``.
    - JAX backend: with ``cluster`` (a ``seglab.distributed.Cluster``), connects the processes
      and trains data-parallel over the devices of all of them; without, data-parallel over
      this machine's devices when it has several (``strategy="auto"``).

    ``strategy=None`` trains on one device. Sets the global dtype policy: call before building
    models.
    """
    from seglab import distributed

    backend = keras.backend.backend()
    if cluster is not None:
        # Before anything else touches JAX (listing the GPUs does).
        distributed.initialize(cluster)
    gpus = _gpu_names()
    use_mixed = bool(gpus) if mixed_precision == "auto" else bool(mixed_precision)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    if backend == "tensorflow":
        jit = bool(gpus) if jit_compile == "auto" else bool(jit_compile)
    else:
        jit = jit_compile
    if backend == "tensorflow" and _multi_worker_cluster():
        workers = _multi_worker_cluster(count=True)
        raise TrainingError(distributed.MULTI_WORKER_MESSAGE.format(workers=workers))
    chosen = None
    if strategy not in ("auto", None):
        chosen = strategy
    elif strategy == "auto" and backend == "tensorflow" and len(gpus) > 1:
        import tensorflow as tf

        chosen = tf.distribute.MirroredStrategy()
    elif backend == "jax" and (
        cluster is not None or (strategy == "auto" and distributed.local_device_count() > 1)
    ):
        chosen = distributed.data_parallel()
    return DeviceSetup(backend, gpus, use_mixed, jit, chosen, cluster)


def _synchronize_batch_norm(model, synchronized: bool) -> None:
    """Batch statistics of the global batch, not of each replica's share, under
    ``tf.distribute`` (Keras' ``BatchNormalization(synchronized=True)``, read at every call).

    Without it each replica's moving mean and variance follow its own share and the copies
    drift apart, so the saved model holds replica 0's. Saved models are written with
    ``synchronized=False``: the JAX backend refuses ``True`` (and needs none: it normalises
    the global batch as it is)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized


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

    # False in a multi-process run: process 0 reads the backup through SyncFromChief.
    restore = True

    def on_train_begin(self, logs=None):
        if self.restore:
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()
            self._batches_seen_since_last_saving = 0

    def _save_model(self):
        from seglab.distributed import without_distribution

        # Only process 0 saves; nothing it creates meanwhile may span the other processes.
        with without_distribution():
            super()._save_model()

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
        _StopOnNonFiniteLoss(out),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
        _Backup(str(out / BACKUP), save_freq=backup_every or "epoch", double_checkpoint=True),
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
    encoder_weights=DEFAULT,
    weights=None,
    overwrite: bool = False,
    verbose: int | str = 1,
    backup_every: int | None = None,
    mixed_precision: bool | str = "auto",
    jit_compile: bool | str = "auto",
    arguments: dict | None = None,
    callbacks: list | None = None,
    log: Callable[[str], None] | None = None,
    strategy: Any = "auto",
    cluster: Any = None,
) -> RunResult:
    """Train ``recipe`` into ``out_dir`` (see the module docstring for what is written).

    Args:
        recipe: a ``seglab.recipes.Recipe`` (e.g. ``seglab.recipes.get("unet-pets")``).
        out_dir: the run folder. A new or empty folder starts a run; an unfinished run is
            resumed; a finished one raises ``RunExistsError`` unless ``overwrite``.
        data_dir: the dataset folder (``None`` downloads the dataset when the recipe can).
        synthetic: train on a small synthetic set written into ``out_dir/synthetic_data``.
        seed: seeds Keras, NumPy, Python and the input pipeline.
        encoder_weights: ``"default"`` (the recipe's), ``"imagenet"``, ``None`` or a weights
            file for the backbone.
        weights: ``None``, or what the whole model starts from (fine-tuning): a ``.keras`` /
            ``.weights.h5`` file, the official ``u2net.pth``, ``"basnet_duts"``...
        verbose: Keras ``fit`` verbosity (1: progress bar).
        backup_every: steps between backups; default a quarter of an epoch.
        arguments: recorded in ``config.json`` (the command-line arguments).
        callbacks: more Keras callbacks for ``fit`` (after the run's own).
        log: where progress messages go (default: stderr).
        strategy: ``"auto"``, ``None`` (one device) or a ``tf.distribute.Strategy`` (see
            ``setup_device``).
        cluster: a ``seglab.distributed.Cluster``: this process is one of several that train
            together (JAX backend). Only process 0 writes ``out_dir``; the others return a
            result without history or metrics.

    Raises:
        RunExistsError, NonFiniteLossError, TrainingInterrupted (all ``TrainingError``);
        ``seglab.data.DataError`` for bad data, before training starts.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    out = Path(out_dir)
    from seglab import distributed

    # In a multi-process run only process 0 reads and writes the run folder.
    chief = cluster is None or cluster.is_chief
    status = run_status(out) if chief else "new"
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
    if (overwrite or status == "new") and out.is_dir() and chief:
        # Only the run's own files: leftovers of a run that failed early, or the replaced run.
        _clear_run(out)
        status = "new"

    settings = recipe.to_dict()
    encoder_setting = recipe.encoder_weights if encoder_weights == DEFAULT else encoder_weights
    run_setup = {
        "seed": seed,
        "encoder_weights": encoder_setting,
        "weights": None if weights is None else str(weights),
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

    if chief:
        out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    device = setup_device(mixed_precision, jit_compile, strategy, cluster)
    if device.num_processes > 1:
        # Every process must train the same model on the same data order; process 0 alone
        # knows whether the run folder holds a model that only needs evaluating.
        distributed.check_same_settings(
            {**settings, **{key: value for key, value in run_setup.items() if key != "data_dir"}}
        )
        already_trained = bool(distributed.broadcast_from_chief(np.int32(already_trained)))
    compile_options = {}
    if device.backend == "jax" and device.strategy is not None:
        # Eager steps across several JAX devices run op by op: ~5x slower than one jit step.
        compile_options["run_eagerly"] = False

    # Data problems surface here, before anything is built.
    if synthetic:
        # The same synthetic set (fixed seed) on every process; only process 0 writes in out.
        data_dir = out / SYNTHETIC_DATA if chief else Path(tempfile.mkdtemp(prefix="seglab-"))
    with distributed.together("reading the data"):
        train_set, val_set = recipe.load_data(data_dir, download=download, synthetic=synthetic)
        train_ds, val_ds = recipe.make_datasets(train_set, val_set, seed=seed)
        if device.backend == "jax" and device.strategy is not None:
            train_ds, val_ds = distributed.distribute_datasets(
                train_ds,
                val_ds,
                global_batch_size=recipe.batch_size,
                num_examples=len(train_set)
                if recipe.steps_per_epoch is None and hasattr(train_set, "pairs")
                else None,
            )
        trace = distributed.trace_from_environment(distributed.process_index())
        if trace is not None:
            train_ds = trace.wrap_dataset(train_ds)

    def build():
        model = recipe.build_model(encoder_weights=encoder_weights, weights=weights)
        if device.mixed_precision:
            model = _float32_outputs(model)
        return recipe.compile(model, jit_compile=device.jit_compile, **compile_options)

    # Creating a distributed variable is itself a step of every process (JAX checks that
    # they agree), so a process failing part way through makes the others fail too.
    with distributed.together("building the model"):
        if already_trained:
            model = load_model(out / MODEL) if chief else None
        else:
            with device.scope():
                model = build()
            if device.backend == "tensorflow" and device.replicas > 1:
                _synchronize_batch_norm(model, True)

    config = {
        "status": "trained" if already_trained else "running",
        "recipe": settings,
        "run": run_setup,
        "task": recipe.task,
        "normalization": recipe.normalization,
        "image_size": recipe.image_size,
        "num_classes": recipe.num_classes,
        "class_names": list(getattr(train_set, "class_names", ()) or recipe.class_names),
        "train_images": len(train_set) if hasattr(train_set, "pairs") else None,
        "val_images": len(val_set) if hasattr(val_set, "pairs") else None,
        "arguments": arguments or {},
        "versions": _versions(),
        "device": device.to_dict(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if chief:
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
    callbacks = [] if trace is None else [trace.callback()]
    callbacks.append(_StopOnNonFiniteLoss(out))
    if chief:
        callbacks += [
            # The CSV row of an epoch is written before its backup: a kill in between repeats
            # the row, never loses it (dedupe_history keeps the last).
            keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
            backup,
        ]
    if device.num_processes > 1:
        backup.restore = False

        def restore_backup():
            """Process 0 reads its backup into a copy of the model that lives on it alone."""
            if not (out / BACKUP).is_dir():
                return None
            with distributed.without_distribution():
                copy = build()
                reader = keras.callbacks.BackupAndRestore(str(out / BACKUP), double_checkpoint=True)
                reader.set_model(copy)
                reader.on_train_begin()
                if not copy.optimizer.built:
                    return None
                values = [
                    keras.ops.convert_to_numpy(v) for v in copy.weights + copy.optimizer.variables
                ]
                return values, getattr(copy, "_initial_epoch", None) or 0

        # Every process starts from process 0's weights (restored from its backup or not).
        callbacks.append(distributed.sync_from_chief(restore_backup if chief else None))
    callbacks += extra_callbacks

    if already_trained:
        if not chief:
            return RunResult(out, None, [], {}, resumed_from, 0)
        log(f"{out}: training had finished; evaluating {out / MODEL}")
    else:
        if resumed_from is not None:
            log(f"Resuming {out} from {out / BACKUP}: epoch {resumed_from + 1} of {recipe.epochs}")
        count = len(train_set) if hasattr(train_set, "pairs") else "?"
        log(f"Training {recipe.name} on {count} images ({device.description})")
        try:
            with device.scope():
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
            if not chief:
                raise TrainingInterrupted(
                    f"interrupted: {cluster.describe()} stopped; process 0 keeps the training "
                    f"state in {out / BACKUP}. Run the same commands again to resume."
                ) from None
            _synchronize_batch_norm(model, False)
            model.save(out / INTERRUPTED)
            try:
                backup.save_now()
            except Exception:  # noqa: BLE001 - the .keras file above is enough to keep the work
                pass
            raise TrainingInterrupted(
                f"interrupted: the model so far is in {out / INTERRUPTED} and the training state "
                f"in {out / BACKUP}. Run the same command again to resume."
            ) from None
        if not chief:
            log(f"{cluster.describe()}: training done; process 0 saves the model in {out}")
            return RunResult(out, model, [], {}, resumed_from, recipe.epochs - (resumed_from or 0))
        _synchronize_batch_norm(model, False)
        model.save(out / MODEL)
        if device.strategy is not None:
            # Evaluate a copy outside the distribution: under MirroredStrategy Keras 3's
            # predict_on_batch gives every replica the whole batch (twice the outputs), and
            # under JAX the variables live on the devices of every process (process 0
            # evaluates alone).
            model = load_model(out / MODEL)
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
            ignore_label=recipe.ignore_label if recipe.task == "multiclass" else None,
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
    model = load_model(path)
    from seglab.models import output_info, preprocessing_of

    try:
        output_info(model)
        legacy = preprocessing_of(model) is None and config.get("normalization") is not None
    except ValueError:
        legacy = True
    if legacy:
        raise TrainingError(
            f"{path}: this model was saved by seglab 0.1, whose models took normalised images "
            f"(normalization {config.get('normalization')!r}) and did not declare their "
            "outputs; seglab 0.2 models take 0..255 images and normalise them inside. Train "
            "it again with the same command plus --overwrite, or use it from Python with "
            "keras.saving.load_model and scale the images yourself."
        )
    return model, config


# Modules whose import registers the custom objects a saved seglab model may use.
_CUSTOM_OBJECT_MODULES = (
    "seglab.models.blocks",
    "seglab.models.heads",
    "seglab.models.preprocessing",
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
