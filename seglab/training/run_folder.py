"""The run folder: its files, its status, its config, its history, and whether a run resumes.

``seglab.training.train`` writes a run folder; ``seglab evaluate``, ``predict`` and ``export``
read one. What is in it:

- ``config.json``: the resolved recipe, the arguments, versions and device, and ``status``
  (``"running"``, ``"trained"`` once ``model.keras`` is saved, ``"finished"`` once evaluated);
- ``history.csv``: one row per epoch (Keras ``CSVLogger``, appended across restarts, each
  epoch kept once: ``dedupe_history``);
- ``backup/``: the training state of an unfinished run (``seglab.training.callbacks.Backup``);
- ``model.keras``, ``metrics.json``; ``interrupted.keras`` after Ctrl-C;
  ``evaluation.json`` from ``seglab evaluate``; ``synthetic_data/`` for ``--synthetic``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import shutil
from pathlib import Path

from seglab.training.errors import RunExistsError

CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
BACKUP = "backup"
INTERRUPTED = "interrupted.keras"
EVALUATION = "evaluation.json"
SYNTHETIC_DATA = "synthetic_data"
# Everything a run writes: the only files overwrite=True deletes.
RUN_FILES = (CONFIG, HISTORY, METRICS, MODEL, BACKUP, INTERRUPTED, EVALUATION, SYNTHETIC_DATA)

# Settings that may change when a run is resumed; anything else must match the backup.
_RESUMABLE_CHANGES = ("epochs",)
# Descriptions of a recipe, not settings.
_DESCRIPTIONS = ("sources", "reference", "title")


def run_status(out_dir) -> str:
    """``"new"`` (missing or empty), ``"finished"``, ``"unfinished"`` or ``"foreign"`` (files
    that are not a seglab run)."""
    out = Path(out_dir)
    if not out.exists() or not any(out.iterdir()):
        return "new"
    config = read_config(out)
    if config is None:
        # A run that failed before writing its config leaves only its own files.
        ours = all(path.name in RUN_FILES or path.name.endswith(".tmp") for path in out.iterdir())
        return "new" if ours else "foreign"
    return "finished" if config.get("status") == "finished" else "unfinished"


def read_config(out_dir) -> dict | None:
    """The run's ``config.json``, or ``None`` when there is none (or it cannot be read)."""
    try:
        return json.loads((Path(out_dir) / CONFIG).read_text())
    except (OSError, ValueError):
        return None


def write_json(path, value) -> None:
    """Write ``value`` as indented JSON, whole or not at all (write, then rename)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def finite_json(value):
    """``value`` with arrays as lists and NaN / infinity as ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if hasattr(value, "tolist"):
        return finite_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def finished_run_message(out) -> str:
    return (
        f"{out}: holds a finished run ({MODEL}, {METRICS}); pass --overwrite to replace it "
        "or choose another --out"
    )


@dataclasses.dataclass
class RunStart:
    """Where a run starts: ``resumed_from`` is the epoch of its backup (``None``: from the
    beginning); ``already_trained``: only the evaluation is left."""

    resumed_from: int | None = None
    already_trained: bool = False


def start_run(out_dir, settings: dict, run_setup: dict, *, overwrite: bool) -> RunStart:
    """Check that ``out_dir`` can take a run of ``settings`` (the recipe's) and ``run_setup``
    (seed, weights, data), clear what a new run replaces, and say where the run starts.

    Raises ``RunExistsError`` for a finished run (unless ``overwrite``), a folder that is not a
    run, or an unfinished run of other settings."""
    out = Path(out_dir)
    status = run_status(out)
    if status == "foreign":
        raise RunExistsError(
            f"{out}: the folder is not empty and holds no seglab run (no {CONFIG}); choose "
            "another --out"
        )
    if status == "finished" and not overwrite:
        raise RunExistsError(finished_run_message(out))
    if overwrite or status == "new":
        # Only the run's own files: leftovers of a run that failed early, or the replaced run.
        if out.is_dir():
            _clear_run(out)
        return RunStart()
    previous = read_config(out) or {}
    differences = _settings_differ(previous.get("recipe", {}), settings)
    differences += _settings_differ(previous.get("run", {}), run_setup)
    if differences:
        raise RunExistsError(
            f"{out}: holds an unfinished run with other settings ("
            + "; ".join(differences)
            + "); rerun with the same settings to resume it, pass --overwrite to start "
            "again, or choose another --out"
        )
    if previous.get("status") == "trained" and (out / MODEL).is_file():
        # Training finished but the evaluation did not: only evaluate.
        if previous["recipe"].get("epochs") != settings["epochs"]:
            raise RunExistsError(
                f"{out}: holds a model trained for {previous['recipe'].get('epochs')} epochs "
                "whose evaluation was interrupted; rerun with the same --epochs to finish "
                "it, or choose another --out"
            )
        return RunStart(settings["epochs"], already_trained=True)
    return RunStart(backup_epoch(out))


def _clear_run(out: Path) -> None:
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _settings_differ(old: dict, new: dict) -> list[str]:
    differences = []
    for key in sorted(set(old) | set(new)):
        if key in _RESUMABLE_CHANGES or key in _DESCRIPTIONS:
            continue
        if old.get(key) != new.get(key):
            differences.append(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now")
    return differences


def backup_epoch(out_dir) -> int | None:
    """The epoch a run resumes at from its ``backup/`` (``None``: no backup)."""
    try:
        metadata = (Path(out_dir) / BACKUP / "training_metadata.json").read_text()
        return int(json.loads(metadata)["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def versions() -> dict[str, str]:
    """The versions that made a run, for its config."""
    import keras
    import numpy

    import seglab

    found = {
        "python": platform.python_version(),
        "seglab": seglab.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import tensorflow as tf

        found["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return found


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


def read_history(out_dir) -> list[dict]:
    """The run's history, one dict per epoch with numbers as numbers."""
    return [
        {key: _number(value) for key, value in row.items()}
        for row in dedupe_history(Path(out_dir) / HISTORY)
    ]


def _number(text: str):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value
