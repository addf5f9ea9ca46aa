"""`cnnsweep tune` prints its results from the SweepSummary run_sweep returns."""

from __future__ import annotations

from cnnsweep.cli.tune import _print_results
from cnnsweep.sweep.summary import BestTrial, SweepSummary, TrialCounts


def test_the_results_read_the_summary_by_attribute(tmp_path, capsys):
    (tmp_path / "leaderboard.csv").write_text("rank,trial_id,status,epochs,val/acc\n1,t1,finished,2,0.8\n")
    summary = SweepSummary(best=BestTrial(trial_id="t1", config={}, val_acc=0.8, checkpoint="/s/best"),
                           trials=TrialCounts(finished=1, total=1), output="/s", report_dir=str(tmp_path),
                           files=["leaderboard.csv"], importances={"train.lr": 1.0}, metric="val/acc", mode="max",
                           algorithm="grid", max_concurrent=1, seconds=3.0, notes=["a note"], analysis="/s/a.html")
    _print_results(summary)
    printed = capsys.readouterr()
    assert "best: trial t1  val/acc 0.8  -> /s/best" in printed.out and "train.lr=1.00" in printed.out
    assert "1 finished, 0 stopped early, 0 errored in 3 s" in printed.out and "analysis: /s/a.html" in printed.out
    assert "note: a note" in printed.err
