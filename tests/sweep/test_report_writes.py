"""write_reports replaces each report file whole: a failed rewrite leaves the previous report."""

from __future__ import annotations

import pytest

from cnnsweep.config import validate_config
from cnnsweep.sweep.report import TrialRecord, write_reports
from cnnsweep.sweep.space import load_search


def _records(n: int) -> list[TrialRecord]:
    return [TrialRecord(f"t{i}", "finished", {"train.lr": 1e-3 * (i + 1)}, params={"train.lr": 1e-3 * (i + 1)},
                        history=[{"epoch": e, "val/acc": 0.1 * e + 0.01 * i, "val/loss": 1.0 - 0.1 * e}
                                 for e in range(3)]) for i in range(n)]


def test_a_failed_rewrite_leaves_the_previous_leaderboard(tmp_path, disk_full_after):
    search = load_search(validate_config({"train": {"epochs": 3}, "search": {
        "algorithm": "optuna", "baseline_first": False, "space": {"train.lr": {"loguniform": [1e-4, 1e-1]}}}}))
    write_reports(_records(3), search, tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert tmp_path / "leaderboard.csv" in files and tmp_path / "importances.json" in files
    # 40 trials: leaderboard.csv, written first, grows past the limit and the disk "fills up"
    with disk_full_after(len(files[tmp_path / "leaderboard.csv"]) + 5), pytest.raises(OSError):
        write_reports(_records(40), search, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files  # all as before, no temp file
