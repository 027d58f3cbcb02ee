"""``train``: a recipe trained into a run folder, resumable, seeded, safe to interrupt.

The steps, each in its own module: check the run folder and where the run starts
(``run_folder.start_run``), set up the device (``devices.setup_device``), load the data and
build the model (the recipe), fit with the run's callbacks (``callbacks``), save, evaluate
(``evaluation.evaluate_run``). Running the same call again after a crash, a kill or Ctrl-C
resumes from ``backup/``: a killed epoch restarts from its beginning with the weights of the
last backup (Keras 3 records the epoch, not the step, of a mid-epoch backup). A finished run
folder is never overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from seglab.recipes.recipe import DEFAULT, Recipe
from seglab.training import run_folder
from seglab.training.callbacks import Backup, StopOnNonFiniteLoss
from seglab.training.devices import float32_outputs, setup_device, synchronize_batch_norm
from seglab.training.errors import TrainingInterrupted
from seglab.training.evaluation import evaluate_run
from seglab.training.loading import load_model
from seglab.training.run_folder import (
    BACKUP,
    CONFIG,
    HISTORY,
    INTERRUPTED,
    METRICS,
    MODEL,
    SYNTHETIC_DATA,
    write_json,
)
from seglab.training.state import build_training_state


@dataclasses.dataclass
class RunResult:
    out_dir: Path
    model: Any
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    resumed_from_epoch: int | None
    epochs_run: int


# Epochs shorter than this back up at their end only: a backup costs more than it saves.
_STEPS_WORTH_A_MID_EPOCH_BACKUP = 40


def _restores_dtype_policy(function):
    """``function`` returns (or raises) with Keras' global dtype policy as it found it:
    ``setup_device`` sets it for the run only."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        previous = keras.config.dtype_policy()
        try:
            return function(*args, **kwargs)
        finally:
            keras.config.set_dtype_policy(previous)

    return wrapper


@_restores_dtype_policy
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
    """Train ``recipe`` into ``out_dir`` (``seglab.training.run_folder`` lists what is written).

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
        backup_every: steps between backups; default a quarter of an epoch, or epoch ends
            only when an epoch is shorter than 40 steps (saving costs more than it saves).
        mixed_precision, jit_compile: ``"auto"`` (on a GPU), True or False (``setup_device``);
            Keras' global dtype policy is put back when ``train`` returns.
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
    settings = recipe.to_dict()
    encoder_setting = recipe.encoder_weights if encoder_weights == DEFAULT else encoder_weights
    run_setup = {
        "seed": seed,
        "encoder_weights": encoder_setting,
        "weights": None if weights is None else str(weights),
        "synthetic": synthetic,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
    }
    if chief:
        start = run_folder.start_run(out, settings, run_setup, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)
    else:
        start = run_folder.RunStart()
    resumed_from, already_trained = start.resumed_from, start.already_trained

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

    steps = recipe.steps_per_epoch
    if steps is None and hasattr(train_set, "pairs"):
        steps_in_set = math.ceil(len(train_set) / recipe.batch_size)
    else:
        steps_in_set = steps

    def build():
        model = recipe.build_model(encoder_weights=encoder_weights, weights=weights)
        if device.mixed_precision:
            model = float32_outputs(model)
        return recipe.compile(
            model,
            jit_compile=device.jit_compile,
            total_steps=steps_in_set and steps_in_set * recipe.epochs,
            **compile_options,
        )

    # Creating a distributed variable is itself a step of every process (JAX checks that
    # they agree), so a process failing part way through makes the others fail too.
    with distributed.together("building the model"):
        if already_trained:
            model = load_model(out / MODEL) if chief else None
        else:
            with device.scope():
                model = build_training_state(build(), train_ds)
            if device.backend == "tensorflow" and device.replicas > 1:
                synchronize_batch_norm(model, True)

    initial_epoch, restored_values = 0, None
    if device.num_processes > 1 and not already_trained:
        # Process 0 reads its backup before fit, into a copy of the model that lives on it
        # alone; every process then starts fit at the backup's epoch.
        with distributed.together("reading the backup"):
            restored = _read_backup(out, build) if chief else None
        restored_values, epoch = restored or (None, 0)
        initial_epoch = int(distributed.broadcast_from_chief(np.int32(epoch)))
        if initial_epoch:
            resumed_from = initial_epoch

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
        "versions": run_folder.versions(),
        "device": device.to_dict(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if chief:
        write_json(out / CONFIG, config)

    if backup_every is None and (
        steps_in_set is None or steps_in_set >= _STEPS_WORTH_A_MID_EPOCH_BACKUP
    ):
        backup_every = max(1, (steps_in_set or 4) // 4)
    # In a multi-process run process 0 has read its backup already (_read_backup).
    backup = Backup(
        out / BACKUP,
        every=backup_every,
        delete_when_done=False,
        restore=device.num_processes == 1,
    )
    extra_callbacks = list(callbacks or [])
    callbacks = [] if trace is None else [trace.callback()]
    callbacks.append(StopOnNonFiniteLoss(out))
    if chief:
        callbacks += [
            # The CSV row of an epoch is written before its backup: a kill in between repeats
            # the row, never loses it (dedupe_history keeps the last).
            keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
            backup,
        ]
    if device.num_processes > 1:
        # Every process starts from process 0's weights (restored from its backup or not).
        callbacks.append(distributed.sync_from_chief(restored_values))
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
                    initial_epoch=initial_epoch,
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
            synchronize_batch_norm(model, False)
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
        synchronize_batch_norm(model, False)
        model.save(out / MODEL)
        if device.strategy is not None:
            # Evaluate a copy outside the distribution: under MirroredStrategy Keras 3's
            # predict_on_batch gives every replica the whole batch (twice the outputs), and
            # under JAX the variables live on the devices of every process (process 0
            # evaluates alone).
            model = load_model(out / MODEL)
        # The backup goes only once model.keras is safe and the config says so.
        config["status"] = "trained"
        write_json(out / CONFIG, config)
        shutil.rmtree(out / BACKUP, ignore_errors=True)
    history = run_folder.read_history(out)
    metrics = evaluate_run(out, recipe=recipe, model=model, val_set=val_set, output=out / METRICS)
    if (out / INTERRUPTED).exists():
        (out / INTERRUPTED).unlink()
    config.update(
        status="finished",
        finished=datetime.datetime.now().isoformat(timespec="seconds"),
        epochs_completed=len(history),
    )
    write_json(out / CONFIG, config)
    first_epoch = resumed_from or 0
    return RunResult(
        out, model, history, metrics, resumed_from, max(0, recipe.epochs - first_epoch)
    )


def _read_backup(out: Path, build):
    """``(values, epoch)`` of the run's backup, read into a model made by ``build`` outside
    the distribution (``None`` without a backup): process 0's part of a multi-process resume."""
    from seglab import distributed

    if not (out / BACKUP).is_dir():
        return None
    with distributed.without_distribution():
        copy = build()
        reader = keras.callbacks.BackupAndRestore(str(out / BACKUP), double_checkpoint=True)
        reader.set_model(copy)
        reader.on_train_begin()
        if not copy.optimizer.built:
            return None
        values = [keras.ops.convert_to_numpy(v) for v in copy.weights + copy.optimizer.variables]
    # Read after restoring: a damaged backup falls back on the previous one.
    return values, run_folder.backup_epoch(out) or 0
