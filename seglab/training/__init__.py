"""Headless training of a recipe into a run folder: resumable, seeded, safe to interrupt.

``train(recipe, out_dir, data_dir=...)`` trains; ``evaluate_run`` evaluates a run;
``load_run`` / ``load_model`` read the model back; ``setup_device`` and
``resumable_callbacks`` serve a notebook's own ``model.fit``. One job per module:

- ``errors``: ``TrainingError`` and its kinds;
- ``devices``: GPUs, mixed precision, XLA, distribution (``setup_device``, ``gpu_names``);
- ``run_folder``: the run folder's files, status, config, history and resume decision;
- ``callbacks``: backup and restore, history, the stop at a NaN loss;
- ``state``: the optimizer's and metrics' variables created before ``fit`` (one trace);
- ``loading``: ``load_model``, ``load_run``;
- ``evaluation``: ``evaluate_run``;
- ``loop``: ``train``.

Every name below is importable from ``seglab.training`` itself.
"""

from seglab.training.callbacks import Backup, StopOnNonFiniteLoss, resumable_callbacks
from seglab.training.devices import DeviceSetup, gpu_names, setup_device
from seglab.training.errors import (
    NonFiniteLossError,
    RunExistsError,
    TrainingError,
    TrainingInterrupted,
)
from seglab.training.evaluation import evaluate_run
from seglab.training.loading import load_model, load_run
from seglab.training.loop import RunResult, train
from seglab.training.run_folder import (
    BACKUP,
    CONFIG,
    EVALUATION,
    HISTORY,
    INTERRUPTED,
    METRICS,
    MODEL,
    RUN_FILES,
    SYNTHETIC_DATA,
    dedupe_history,
    finite_json,
    read_config,
    run_status,
    write_json,
)
from seglab.training.state import build_training_state

__all__ = [
    "BACKUP",
    "CONFIG",
    "EVALUATION",
    "HISTORY",
    "INTERRUPTED",
    "METRICS",
    "MODEL",
    "RUN_FILES",
    "SYNTHETIC_DATA",
    "Backup",
    "DeviceSetup",
    "NonFiniteLossError",
    "RunExistsError",
    "RunResult",
    "StopOnNonFiniteLoss",
    "TrainingError",
    "TrainingInterrupted",
    "build_training_state",
    "dedupe_history",
    "evaluate_run",
    "finite_json",
    "gpu_names",
    "load_model",
    "load_run",
    "read_config",
    "resumable_callbacks",
    "run_status",
    "setup_device",
    "train",
    "write_json",
]
