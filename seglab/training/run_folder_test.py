"""The run folder: history, JSON files, status."""

from seglab import training


def test_dedupe_history_keeps_the_last_row_of_each_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,0.9\n1,0.8\n1,0.7\n2,0.6\n")
    rows = training.dedupe_history(path)
    assert [(r["epoch"], r["loss"]) for r in rows] == [("0", "0.9"), ("1", "0.7"), ("2", "0.6")]
    assert path.read_text().splitlines() == ["epoch,loss", "0,0.9", "1,0.7", "2,0.6"]
