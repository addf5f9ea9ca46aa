"""Ray Tune's results -> trial records, the report files, `best/` and summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from cnnsweep.config import ConfigError, RunConfig, apply_overrides, config_to_dict, validate_config
from cnnsweep.distributed.tune.storage import copy_tree, path_exists, join_path, is_uri
from cnnsweep.distributed.tune.tuner import SweepPlan
from cnnsweep.sweep.report import TrialRecord, classify, count_statuses, write_reports
from cnnsweep.sweep.summary import SUMMARY_FILE, BestTrial, SweepSummary, TrialCounts, save_summary_file
from cnnsweep import metrics as M


def _history(result: Any) -> list[dict[str, Any]]:
    df = result.metrics_dataframe  # Ray: every reported row of this trial
    if df is None or df.empty or "epoch" not in df:
        return []
    df = df[[c for c in M.REPORT_KEYS if c in df.columns]].dropna(subset=["epoch"])
    df = df.drop_duplicates(subset="epoch", keep="last").sort_values("epoch")  # a resumed trial may repeat
    return [{k: v for k, v in row.items() if v == v} for row in df.to_dict("records")]  # v == v drops NaN


def _record(result: Any, base: dict[str, Any]) -> TrialRecord:
    point = (result.config or {}).get("point") or {}
    overrides = point.get("overrides") or {}
    history = _history(result)
    try:
        planned = validate_config(apply_overrides(base, overrides)).train.epochs
    except ConfigError:
        planned = 0
    trial_id = Path(result.path).name.removeprefix("trial_")
    params = {k: v for k, v in (result.config or {}).items() if k != "point"}
    epochs_done = int(history[-1]["epoch"]) + 1 if history else 0  # rows lost to a kill do not count
    return TrialRecord(trial_id=trial_id, status=classify(epochs_done, planned, result.error is not None),
                       overrides=overrides, label=point.get("label", ""), history=history, params=params,
                       error=str(result.error) if result.error else None)


def collect_records(results: Any, cfg: RunConfig) -> list[TrialRecord]:
    base = config_to_dict(cfg)
    return sorted((_record(r, base) for r in results), key=lambda r: r.trial_id)  # Ray: ResultGrid


def _best_checkpoint(record: TrialRecord, metric: str, mode: str) -> Optional[str]:
    """The checkpoint of the trial's best epoch (Train keeps its best by search.metric); falls back to the
    newest one still on disk when that epoch's checkpoint is gone (deleted, or a run killed mid-write)."""
    best = record.best_row(metric, mode) or {}
    candidates = [best.get("checkpoint_path")] + [r.get("checkpoint_path") for r in reversed(record.history)]
    return next((c for c in candidates if c and path_exists(c)), None)


def report_dir_for(output: str, report_dir: Optional[str]) -> Path:
    if report_dir:
        return Path(report_dir)
    if is_uri(output):
        return Path("runs") / (output.rstrip("/").rsplit("/", 1)[-1] + "-report")
    return Path(output)


def summarize_sweep(plan: SweepPlan, records: list[TrialRecord], report_dir: Path) -> SweepSummary:
    """Write the report files, copy the best checkpoint to <output>/best, and return the summary.

    Works from `records` alone (built from Ray Tune's results, which it reads from storage), so a
    URI output degrades to: report files written locally, then uploaded by `save_summary`."""
    search = plan.search
    report = write_reports(records, search, report_dir)
    board = report["leaderboard"]
    scored = board[board[search.metric].notna()] if search.metric in board else board.iloc[:0]
    best = None
    if len(scored):
        top = next(r for r in records if r.trial_id == scored.iloc[0]["trial_id"])
        best = _best_summary(plan, top)
    return SweepSummary(best=best, trials=TrialCounts(**count_statuses(records)), output=str(plan.output),
                        report_dir=str(report_dir.resolve()), files=report["files"],
                        importances=report["importances"], metric=search.metric, mode=search.mode,
                        algorithm=search.algorithm, max_concurrent=plan.max_concurrent)


def save_summary(plan: SweepPlan, summary: SweepSummary, report_dir: Path) -> None:
    """summary.json next to the report; with a URI output the whole report is uploaded to <output>/report."""
    save_summary_file(summary, report_dir / SUMMARY_FILE)  # old file or new, never half
    if is_uri(plan.output):
        copy_tree(str(report_dir.resolve()), join_path(plan.output, "report"))


def _best_summary(plan: SweepPlan, top: TrialRecord) -> BestTrial:
    row = top.best_row(plan.search.metric, plan.search.mode) or {}
    source = _best_checkpoint(top, plan.search.metric, plan.search.mode)
    dest = join_path(plan.output, "best")
    if source:
        copy_tree(source, dest)
    cfg = validate_config(apply_overrides(config_to_dict(plan.cfg), top.overrides))
    return BestTrial(trial_id=top.trial_id, label=top.label, params=top.overrides, config=config_to_dict(cfg),
                     metric_value=row.get(plan.search.metric), val_acc=row.get(M.VAL_ACC),
                     val_loss=row.get(M.VAL_LOSS), epoch=row.get(M.EPOCH),
                     checkpoint=str(dest) if source else None, source_checkpoint=source)
