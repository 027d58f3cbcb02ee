"""The run folder: history, JSON files, status."""

import json

import numpy as np
import pytest

from seglab import training
from seglab.training import run_folder


def test_dedupe_history_keeps_the_last_row_of_each_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,0.9\n1,0.8\n1,0.7\n2,0.6\n")
    rows = training.dedupe_history(path)
    assert [(r["epoch"], r["loss"]) for r in rows] == [("0", "0.9"), ("1", "0.7"), ("2", "0.6")]
    assert path.read_text().splitlines() == ["epoch,loss", "0,0.9", "1,0.7", "2,0.6"]


def test_json_files_are_strict_and_whole(tmp_path):
    path = tmp_path / "metrics.json"
    value = training.finite_json({"iou": float("nan"), "per_class": np.array([0.5, np.inf])})
    training.write_json(path, value)
    assert json.loads(path.read_text()) == {"iou": None, "per_class": [0.5, None]}
    assert not (tmp_path / "metrics.json.tmp").exists()


def test_start_run_says_where_a_run_starts(tmp_path):
    settings, run = {"epochs": 3, "batch_size": 4}, {"seed": 0}
    out = tmp_path / "run"
    assert run_folder.start_run(out, settings, run, overwrite=False) == run_folder.RunStart()
    out.mkdir()
    (out / "history.csv").write_text("epoch,loss\n")  # a run that failed before its config
    assert run_folder.start_run(out, settings, run, overwrite=False) == run_folder.RunStart()
    assert not (out / "history.csv").exists(), "a new run clears the leftovers of its own files"

    training.write_json(out / "config.json", {"status": "running", "recipe": settings, "run": run})
    (out / "backup").mkdir()
    (out / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    # More epochs may be asked for when resuming; other settings must match.
    longer = {**settings, "epochs": 5}
    assert run_folder.start_run(out, longer, run, overwrite=False).resumed_from == 2
    with pytest.raises(training.RunExistsError, match="batch_size: 4 then, 8 now"):
        run_folder.start_run(out, {**settings, "batch_size": 8}, run, overwrite=False)

    training.write_json(out / "config.json", {"status": "trained", "recipe": settings, "run": run})
    (out / "model.keras").write_bytes(b"")
    start = run_folder.start_run(out, settings, run, overwrite=False)
    assert start == run_folder.RunStart(resumed_from=3, already_trained=True)
    with pytest.raises(training.RunExistsError, match="same --epochs"):
        run_folder.start_run(out, longer, run, overwrite=False)

    training.write_json(out / "config.json", {"status": "finished", "recipe": settings, "run": run})
    with pytest.raises(training.RunExistsError, match="finished run"):
        run_folder.start_run(out, settings, run, overwrite=False)
    assert run_folder.start_run(out, settings, run, overwrite=True) == run_folder.RunStart()
    assert not any(out.iterdir())
