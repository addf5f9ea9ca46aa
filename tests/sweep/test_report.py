"""The sweep report from trial records: leaderboard order, ablation statistics, plots, importances."""

from __future__ import annotations

import pandas as pd
import pytest

from cnnsweep.config import validate_config
from cnnsweep.sweep.space import load_search
from cnnsweep.sweep.report import TrialRecord, build_ablation, build_leaderboard, classify, write_reports

SPACE = {"baseline_first": False, "space": {
    "model.batch_norm": {"choice": [True, False]},
    "train.lr": {"loguniform": [1e-4, 1e-2]},
}}


def _records() -> list[TrialRecord]:
    """Batch norm helps (val/acc 0.9/0.8 vs 0.5/0.4); the curves rise over 3 epochs."""
    spec = [("a", True, 1e-3, 0.9), ("b", True, 3e-3, 0.8), ("c", False, 1e-3, 0.5), ("d", False, 5e-3, 0.4)]
    out = []
    for tid, bn, lr, top in spec:
        hist = [{"epoch": e, "val/acc": top * (e + 1) / 3, "val/loss": 2.0 - top * e, "checkpoint_path": f"/c/{tid}{e}"}
                for e in range(3)]
        out.append(TrialRecord(tid, "finished", {"model.batch_norm": bn, "train.lr": lr}, history=hist,
                               params={"model.batch_norm": bn, "train.lr": lr}))
    return out


@pytest.fixture
def search():
    return load_search(validate_config({"train": {"epochs": 3}, "search": SPACE}))


def test_leaderboard_ranks_by_each_trials_best_epoch(search):
    board = build_leaderboard(_records(), search)
    assert list(board["trial_id"]) == ["a", "b", "c", "d"]
    assert list(board["rank"]) == [1, 2, 3, 4]
    top = board.iloc[0]
    assert top["val/acc"] == pytest.approx(0.9) and top["best_epoch"] == 2 and top["checkpoint"] == "/c/a2"
    assert top["param:model.batch_norm"] == True  # noqa: E712  (a numpy bool)


def test_ablation_means_and_bests_per_value(search):
    table = build_ablation(_records(), search)
    bn = table[table["factor"] == "model.batch_norm"].set_index("value")
    assert bn.loc["True", "mean val/acc"] == pytest.approx(0.85)
    assert bn.loc["False", "mean val/acc"] == pytest.approx(0.45)
    assert bn.loc["True", "best val/acc"] == pytest.approx(0.9)
    assert bn.loc["False", "num_trials"] == 2
    assert set(table["factor"]) == {"model.batch_norm", "train.lr"}


def test_write_reports_files_and_importances(search, tmp_path):
    report = write_reports(_records(), search, tmp_path)
    for name in ("leaderboard.csv", "history.csv", "ablation.csv", "curves/model.batch_norm.png",
                 "curves/train.lr.png", "importances.json"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 12 and set(history["trial_id"]) == {"a", "b", "c", "d"}
    assert set(report["importances"]) == {"model.batch_norm", "train.lr"}
    assert sum(report["importances"].values()) == pytest.approx(1.0)


def test_errored_trials_sort_last_and_keep_their_error(search):
    records = _records() + [TrialRecord("e", "errored", {"model.batch_norm": True}, error="Traceback\nModelError: x")]
    board = build_leaderboard(records, search)
    assert board.iloc[-1]["trial_id"] == "e" and board.iloc[-1]["error"] == "ModelError: x"


def test_classify():
    assert classify(3, 3, False) == "finished"
    assert classify(1, 3, False) == "stopped_early"
    assert classify(3, 3, True) == "errored"


def test_importances_from_a_few_trials_warn_once_not_once_per_parameter(caplog, recwarn):
    from cnnsweep.sweep.report import param_importances

    wide = load_search(validate_config({"train": {"epochs": 3}, "search": {"baseline_first": False, "space": {
        "model.batch_norm": {"choice": [True, False]}, "train.lr": {"loguniform": [1e-4, 1e-2]},
        "model.dropout": {"choice": [0.0, {"uniform": [0.1, 0.4]}]}}}}))
    records = _records()
    for r, rate in zip(records, (0.2, 0.3, None, 0.1)):  # the conditional rate is inactive in one trial only
        r.params["model.dropout"] = 0.0 if rate is None else "uniform[0.1, 0.4]"
        if rate is not None:
            r.params["model.dropout:uniform"] = rate
    with caplog.at_level("WARNING", logger="cnnsweep.sweep.report"):
        importances = param_importances(records, wide)
    assert {"model.batch_norm", "train.lr"} <= set(importances)
    assert [w for w in recwarn if "regimes" in str(w.message)] == []  # Optuna's, one per parameter
    assert [r.getMessage() for r in caplog.records] == [
        "parameter importances from 4 trials are rough: some conditional parameters were active (or "
        "inactive) in fewer than 2 trials"]
