"""Trained models back from disk: a ``.keras`` file (``load_model``) or a run folder
(``load_run``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import keras

from seglab.training.errors import TrainingError
from seglab.training.run_folder import CONFIG, INTERRUPTED, MODEL, read_config

# Modules whose import registers the custom objects a saved seglab model may use.
CUSTOM_OBJECT_MODULES = (
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
    for module in CUSTOM_OBJECT_MODULES:
        importlib.import_module(module)  # registers seglab's layers; a broken import is a bug
    return keras.saving.load_model(path, compile=False)


def load_run(run_dir):
    """``(model, config)`` of a finished run folder (or ``interrupted.keras`` of a stopped one)."""
    out = Path(run_dir)
    config = read_config(out)
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
