"""summary.json is written and read through SweepSummary: round trip, versions, unknown keys."""

from __future__ import annotations

import json

import pytest

from cnnsweep.config import ConfigError
from cnnsweep.sweep.summary import (FORMAT_VERSION, SUMMARY_FILE, BestTrial, EnsembleExport, SweepSummary,
                                    TrialCounts, load_summary, save_summary_file)


def _summary(**changes) -> SweepSummary:
    best = BestTrial(trial_id="ab12c_00001", params={"train.lr": 0.01}, config={"train": {"lr": 0.01}},
                     metric_value=0.9, val_acc=0.9, val_loss=0.3, epoch=2, checkpoint="/s/best")
    fields = dict(best=best, trials=TrialCounts(finished=2, stopped_early=1, total=3), output="/s",
                  report_dir="/s", files=["leaderboard.csv"], importances={"train.lr": 1.0}, metric="val/acc",
                  mode="max", algorithm="optuna", max_concurrent=2, seconds=12.5, notes=["a note"])
    return SweepSummary(**(fields | changes))


def _write(tmp_path, raw) -> str:
    path = tmp_path / SUMMARY_FILE
    path.write_text(json.dumps(raw))
    return str(path)


def test_round_trip(tmp_path):
    summary = _summary(ensemble=EnsembleExport(onnx="e.onnx", verification={"ok": True}, metrics={"val/acc": 0.9},
                                               members=["a", "b"]))
    save_summary_file(summary, tmp_path / SUMMARY_FILE)
    raw = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert raw["version"] == FORMAT_VERSION and raw["best"]["val_acc"] == 0.9 and raw["analysis"] is None
    loaded = load_summary(tmp_path)  # the sweep folder will do
    assert loaded == summary
    assert loaded.best.trial_id == "ab12c_00001" and loaded.trials.total == 3 and loaded.ensemble.members == ["a", "b"]


def test_a_sweep_without_a_best_trial_round_trips(tmp_path):
    save_summary_file(_summary(best=None), tmp_path / SUMMARY_FILE)
    assert load_summary(tmp_path / SUMMARY_FILE).best is None


def test_assignments_are_checked():
    summary = _summary()
    with pytest.raises(ValueError, match="analysis"):
        summary.analysis = ["not", "a", "path"]


@pytest.mark.parametrize("change, words", [
    (lambda raw: raw | {"version": FORMAT_VERSION + 1}, f"format version {FORMAT_VERSION + 1}, but this cnnsweep "
                                                        f"reads version {FORMAT_VERSION}"),
    (lambda raw: raw | {"version": "1"}, "format version '1'"),
    (lambda raw: {k: v for k, v in raw.items() if k != "version"}, "no format version: written by an older"),
    (lambda raw: raw | {"extra": 1}, "not a sweep summary \\(extra: unknown key\\)"),
    (lambda raw: raw | {"best": raw["best"] | {"val/acc": 0.9}}, "best.val/acc: unknown key"),
    (lambda raw: raw | {"trials": {"finished": "many"}}, "trials.finished: Input should be a valid integer"),
    (lambda raw: [raw], "not a sweep summary \\(a JSON list"),
])
def test_another_version_or_shape_is_one_config_error_line(tmp_path, change, words):
    path = _write(tmp_path, change(_summary().to_json_dict()))
    with pytest.raises(ConfigError, match=words) as err:
        load_summary(path)
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_a_file_that_is_no_json_is_one_line(tmp_path):
    (tmp_path / SUMMARY_FILE).write_text("{half")
    with pytest.raises(ConfigError, match="cannot be read as a sweep summary \\(JSONDecodeError"):
        load_summary(tmp_path)
    with pytest.raises(ConfigError, match="cannot be read as a sweep summary \\(FileNotFoundError"):
        load_summary(tmp_path / "nope.json")
