"""summary.json: written through SweepSummary; a failed rewrite leaves the previous summary."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnsweep.distributed.tune.results import save_summary
from cnnsweep.sweep.summary import BestTrial, SweepSummary, TrialCounts, load_summary


def _summary(trial_id: str, notes: list[str]) -> SweepSummary:
    return SweepSummary(best=BestTrial(trial_id=trial_id, config={}), trials=TrialCounts(), output="o",
                        report_dir="r", files=[], importances={}, metric="val/acc", mode="max",
                        algorithm="grid", max_concurrent=1, notes=notes)


def test_summary_json_survives_a_failed_rewrite(tmp_path, disk_full_after):
    plan = SimpleNamespace(output=str(tmp_path))  # a local output: nothing is uploaded
    save_summary(plan, _summary("a", []), tmp_path)
    before = (tmp_path / "summary.json").read_bytes()
    with disk_full_after(len(before) + 10), pytest.raises(OSError):
        save_summary(plan, _summary("b", ["x" * 100] * 50), tmp_path)
    assert (tmp_path / "summary.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert load_summary(tmp_path).best.trial_id == "a"


def test_summarize_sweep_writes_a_summary_that_loads_back(tmp_path):
    from cnnsweep.config import validate_config
    from cnnsweep.distributed.tune.results import summarize_sweep
    from cnnsweep.distributed.tune.tuner import SweepPlan
    from cnnsweep.sweep.report import TrialRecord
    from cnnsweep.sweep.space import load_search

    cfg = validate_config({"search": {"algorithm": "grid", "space": {"train.lr": {"choice": [0.1, 0.01]}}}})
    rows = lambda acc: [{"epoch": e, "val/acc": acc * (e + 1) / 2, "val/loss": 1.0 - acc} for e in range(2)]  # noqa: E731
    records = [TrialRecord("t0", "finished", {"train.lr": 0.1}, history=rows(0.5)),
               TrialRecord("t1", "finished", {"train.lr": 0.01}, history=rows(0.8))]
    plan = SweepPlan(cfg, load_search(cfg), str(tmp_path), 1)
    summary = summarize_sweep(plan, records, tmp_path)
    save_summary(plan, summary, tmp_path)
    loaded = load_summary(tmp_path)
    assert loaded == summary and loaded.best.trial_id == "t1" and loaded.best.epoch == 1
    assert loaded.best.metric_value == loaded.best.val_acc == pytest.approx(0.8) and loaded.metric == "val/acc"
    assert loaded.best.checkpoint is None and loaded.trials.total == 2  # no checkpoint was left to copy
