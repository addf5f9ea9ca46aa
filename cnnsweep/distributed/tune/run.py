"""`run_sweep`: what `cnnsweep tune` calls. Plans, runs (or resumes) the Tuner, then writes the report."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from cnnsweep.config import ConfigError, RunConfig, check_resumed_config, save_config
from cnnsweep.lockfile import folder_entries, hold_output_lock
from cnnsweep.distributed.tune import progress
from cnnsweep.distributed.tune.resources import (RELEASE_DEADLINE_S, derive_max_concurrent, held_placement_groups,
                                                  remove_placement_groups, trial_footprint, wait_until_released)
from cnnsweep.distributed.tune.results import collect_records, save_summary, summarize_sweep, report_dir_for
from cnnsweep.distributed.tune.storage import path_exists, join_path, is_uri, resolve_output
from cnnsweep.distributed.tune.tuner import TUNER_STATE, SweepPlan, build_trainable, build_tuner, restore_tuner
from cnnsweep.sweep.preflight import preflight_sweep
from cnnsweep.sweep.space import load_search, num_trials
from cnnsweep.sweep.summary import EnsembleExport, SweepSummary


def plan_sweep(cfg: RunConfig, output: str, cluster: dict[str, float]) -> SweepPlan:
    search = load_search(cfg)
    need = trial_footprint(cfg, search)
    return SweepPlan(cfg, search, resolve_output(output),
                     derive_max_concurrent(search.max_concurrent, cluster, need, num_trials(search)))


SWEEP_CONFIG = "sweep.yaml"  # the resolved sweep config, saved when the sweep starts


def _check_output(plan: SweepPlan, resume: bool) -> None:
    """Fresh: the output must hold no sweep (and, when local, nothing at all). --resume: the config must
    be the one the sweep started with. Call with the output's lock held."""
    if resume:
        if not is_uri(plan.output):
            saved = Path(plan.output) / SWEEP_CONFIG
            if not saved.is_file():
                raise ConfigError(f"--resume: no sweep to continue in {plan.output} (no {SWEEP_CONFIG}); run "
                                  "without --resume to start one")
            check_resumed_config(plan.cfg, saved)
        return
    entries = [] if is_uri(plan.output) else folder_entries(plan.output)
    if entries or path_exists(join_path(plan.experiment, TUNER_STATE)):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(f"{plan.output} already holds {'a sweep' if not entries else shown}: pass --resume to "
                          "continue the sweep there, or choose another --output")


def _output_lock(output: str) -> contextlib.AbstractContextManager:
    """An exclusive lock on a local output for the sweep's life; object storage (s3://...) has no
    locks, so two sweeps on one URI are the user's to avoid."""
    return contextlib.nullcontext() if is_uri(output) else hold_output_lock(resolve_output(output))


def run_sweep(cfg: RunConfig, output: str, *, resume: bool = False, address: Optional[str] = None,
              report_dir: Optional[str] = None,
              on_progress: Optional[Callable[[list[dict[str, Any]]], None]] = None) -> SweepSummary:
    """Run (or with `resume`, continue) the sweep `cfg.search` describes; returns the summary."""
    from cnnsweep.data import load_dataset

    # config errors, and model branches that cannot run (no weights offline), before anything slow starts
    cfg, dropped = preflight_sweep(cfg)
    for note in dropped:
        print(f"warning: {note}", file=sys.stderr)
    dataset = load_dataset(cfg.data)  # data errors too, before Ray starts
    with _output_lock(output):
        return _run_locked(cfg, output, resume, address, report_dir, on_progress, dataset, notes=dropped)


def _run_locked(cfg: RunConfig, output: str, resume: bool, address: Optional[str], report_dir: Optional[str],
                on_progress: Optional[Callable[[list[dict[str, Any]]], None]], dataset: Any, *,
                notes: list[str]) -> SweepSummary:
    from cnnsweep.distributed.cluster import start_ray

    plan = plan_sweep(cfg, output, start_ray(address))  # Ray: connect (or start a private instance)
    _check_output(plan, resume)
    if not resume and not is_uri(plan.output):
        save_config(cfg, Path(plan.output) / SWEEP_CONFIG)
    trainable = build_trainable(plan, dataset)
    tuner = restore_tuner(plan, trainable) if resume else build_tuner(plan, trainable)
    start = time.perf_counter()
    held_before = held_placement_groups()  # Ray: another job's groups on a shared cluster are not ours
    progress.set_progress_sink(on_progress)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Tune prints its banner on stdout; --json owns stdout
            results = tuner.fit()  # Ray: blocks until every trial finished, stopped early or errored
    finally:
        progress.set_progress_sink(None)
    released, release_notes = _release_sweep(held_before)
    reports = report_dir_for(plan.output, report_dir)
    summary = summarize_sweep(plan, collect_records(results, cfg), reports)
    summary.seconds = round(time.perf_counter() - start, 1)
    summary.notes = notes + list(dataset.notes) + release_notes
    _export_best(plan, summary)
    save_summary(plan, summary, reports)  # leaderboard + summary first: the analysis reads them
    if _analyze_result(plan, summary, reports, on_ray=released):
        save_summary(plan, summary, reports)
    return summary


def _release_sweep(held_before: set[str]) -> tuple[bool, list[str]]:
    """Wait until every placement group the sweep's trials made is removed, so that the end-of-sweep
    work finds the cluster's CPUs free; returns (all released, notes). On a private instance every
    group is this sweep's, so one still held at the deadline is removed here; on a shared cluster it
    is left alone and the analysis runs in this process instead of waiting for CPUs."""
    from cnnsweep.distributed.cluster import is_private_instance

    left = wait_until_released(held_before)
    if not left:
        return True, []
    if is_private_instance():
        remove_placement_groups(left)
        return True, [f"{len(left)} placement group(s) of ended trials were still reserved "
                      f"{RELEASE_DEADLINE_S:.0f} s after the sweep; cnnsweep removed them"]
    return False, [f"{len(left)} placement group(s) made during the sweep were still reserved on the cluster "
                   f"{RELEASE_DEADLINE_S:.0f} s after it ended (is the cluster's dashboard, which Ray Train's "
                   "cleaner needs, running?); the analysis ran in this process"]


def _export_best(plan: SweepPlan, summary: SweepSummary) -> None:
    """search.export: the best trial's checkpoint -> <output>/best/model.onnx, verified against PyTorch;
    with `{top: K}` the K best too (exports/topN_*.onnx), or with `ensemble: true` one ensemble of them.
    A failed export is reported in the summary; the sweep's results stay as they are."""
    if not plan.search.export or summary.best is None or is_uri(plan.output):
        return
    from cnnsweep.export import ExportError, export_best

    try:
        report = export_best(plan.output)
        summary.best.onnx = report.onnx if report.ok else None
        summary.best.onnx_verification = report.verification
    except (ExportError, ValueError, OSError) as err:  # CheckpointError and DataError are ValueErrors
        summary.best.onnx = None
        summary.notes.append(f"ONNX export of the best trial failed: {err}")
    _export_top(plan, summary)


def _export_top(plan: SweepPlan, summary: SweepSummary) -> None:
    spec = plan.search.export
    if isinstance(spec, bool) or (spec.top == 1 and not spec.ensemble):
        return
    from cnnsweep.export import ExportError, export_path
    from cnnsweep.export.ensemble_export import export_ensemble

    try:
        if spec.ensemble:
            report = export_ensemble(plan.output, top=spec.top)
            summary.ensemble = EnsembleExport(onnx=report.onnx, verification=report.verification,
                                              metrics=report.ensemble["metrics"],
                                              members=[m["trial_id"] for m in report.ensemble["members"]])
        else:
            summary.exports = [r.onnx for r in export_path(plan.output, top=spec.top)]
    except (ExportError, ValueError, OSError) as err:  # EnsembleError is a ValueError too
        summary.notes.append(f"ONNX export of the top {spec.top} trials failed: {err}")


ANALYZE_WORKERS = 2  # Ray tasks predicting the split at once


def _analyze_result(plan: SweepPlan, summary: SweepSummary, report_dir: Path, *, on_ray: bool = True) -> bool:
    """search.analyze: `cnnsweep analyze` on the sweep -> <output>/analysis/report.html, its inference as
    Ray tasks (`on_ray`) or in this process. A failed analysis is a note in the summary, never a failed
    sweep. Returns whether the summary changed."""
    if not plan.search.analyze or summary.best is None or is_uri(plan.output):
        return False
    from cnnsweep.analysis.run import analyze_target
    from cnnsweep.distributed.analysis_tasks import ray_predict

    try:
        m = analyze_target(report_dir, predict=ray_predict(ANALYZE_WORKERS) if on_ray else None, split="test",
                           output=report_dir / "analysis")
        summary.analysis = str(Path(m.output) / "report.html")
    except Exception as err:  # noqa: BLE001 - any failure here must leave the sweep's results intact
        summary.analysis = None
        summary.notes.append(f"analysis of the sweep failed: {type(err).__name__}: {err}")
    return True
