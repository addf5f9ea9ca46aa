"""The sweep's CSVs and curves with hostile strings: formulas are quoted, `$` is not mathtext,
undecodable names are written escaped, and numbers (negative ones too) stay numbers."""

from __future__ import annotations

import csv

import pytest

from cnnsweep.config import validate_config
from cnnsweep.sweep.report import TrialRecord, write_reports
from cnnsweep.sweep.space import load_search

UNDECODABLE = b"t\xe9".decode("utf-8", "surrogateescape")
VALUES = ["$\\frac{$", "=1+1", "$x$", "-2"]


@pytest.fixture
def search():
    return load_search(validate_config({"train": {"epochs": 2}, "search": {
        "algorithm": "grid", "baseline_first": False, "space": {"model.batch_norm": {"choice": [True, False]}}}}))


def _records() -> list[TrialRecord]:
    ids = ["=cmd|' /C calc'!A0", "@SUM(1)", UNDECODABLE, "+1"]
    return [TrialRecord(tid, "errored", {"model.batch_norm": value}, error="-2+3 Error: boom",
                        history=[{"epoch": e, "val/acc": 0.5 + 0.1 * e - 0.01 * i, "val/loss": -0.5 * (e + 1)}
                                 for e in range(2)])
            for i, (tid, value) in enumerate(zip(ids, VALUES))]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_cells_from_trials_are_not_formulas(search, tmp_path):
    write_reports(_records(), search, tmp_path)
    board = _rows(tmp_path / "leaderboard.csv")
    assert [r["trial_id"] for r in board] == ["'=cmd|' /C calc'!A0", "'@SUM(1)", "t\\xe9", "+1"]
    assert [r["param:model.batch_norm"] for r in board] == ["$\\frac{$", "'=1+1", "$x$", "-2"]
    assert {r["error"] for r in board} == {"'-2+3 Error: boom"}
    assert float(board[0]["val/loss"]) == -1.0  # a negative number is still a number (best epoch: 1)
    history = _rows(tmp_path / "history.csv")
    assert history[0]["trial_id"] == "'=cmd|' /C calc'!A0" and float(history[0]["val/loss"]) == -0.5
    ablation = _rows(tmp_path / "ablation.csv")
    assert "'=1+1" in {r["value"] for r in ablation}


def test_curves_draw_values_literally(search, tmp_path):
    report = write_reports(_records(), search, tmp_path)
    assert "curves/model.batch_norm.png" in report["files"]
    assert (tmp_path / "curves" / "model.batch_norm.png").stat().st_size > 1000
