"""Ray Tune layer: a sweep runs many candidates; each Tune trial drives one Ray Train run (`TorchTrainer`).

    run_sweep(cfg, output, resume=False, address=None) -> summary dict      # what `cnnsweep tune` calls

A trial is a plain Tune function (`run_trial`) that builds a TorchTrainer with `ray_train.build_trainer`
and reports each epoch back to Tune through `TuneReportCallback` (Ray 2.60's replacement for passing a
trainer to `Tuner`). Layout of an output folder (a local path, or a URI such as s3://bucket/sweep):

    sweep.yaml        the resolved sweep (base config + search)
    tune/             Ray Tune's experiment: trial_<id>/ with progress.csv, result.json, TensorBoard events
    train/trial_<id>/ each trial's Ray Train run: its best `train.num_to_keep` checkpoints
    best/             a copy of the best trial's best checkpoint (checkpoint.pt + config.yaml)
    leaderboard.csv history.csv ablation.csv curves/*.png importances.json summary.json

Every point where this module touches Ray is marked `# Ray:`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.logger import TBXLoggerCallback

from cnnsweep.config import (ConfigError, RunConfig, apply_overrides, config_to_dict, get_dotted, save_config,
                             validate_config)
from cnnsweep.search_space import (SearchConfig, baseline_params, default_startup_trials, expand_grid, load_search,
                                   num_trials, sample_overrides)
from cnnsweep.sweep_report import TrialRecord, classify, count_statuses, write_reports

log = logging.getLogger(__name__)

EXPERIMENT = "tune"  # Tune experiment folder under the output
TRAIN_RUNS = "train"  # Ray Train runs folder under the output
# The trial function only waits on its TorchTrainer, whose workers hold the real CPUs/GPUs. Reserving a
# CPU for it too would make 2 trials of 2x1-CPU workers need 6 CPUs, and on a 2-core box the workers of
# a trial could wait forever behind their own driver. Ray rejects an all-zero bundle, hence 1 byte.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 1}
DATASET_FIELDS = ("name", "root", "download", "image_size", "cache_dir", "val_fraction",
                  "max_train_samples", "max_val_samples")  # fields that change what load_dataset returns
SYNC_PERIOD_LOCAL_S = 5  # a local copy: cheap
SYNC_PERIOD_URI_S = 60  # an upload to object storage: each sync costs requests
REPORT_KEYS = ("epoch", "epochs_done", "train/loss", "train/acc", "val/loss", "val/acc", "val/f1_macro",
               "test/acc", "test/precision_macro", "test/recall_macro", "test/f1_macro", "images_per_s",
               "lr", "checkpoint_path")


# ---------------------------------------------------------------------------- one trial


def trial_run_name(trial_id: str) -> str:
    """Deterministic per trial: a restored trial finds its Ray Train run (and checkpoints) again."""
    return f"trial_{trial_id}"


def trial_dirname(trial: Any) -> str:
    return trial_run_name(trial.trial_id)


class EpochReportCallback(TuneReportCallback):
    """TuneReportCallback plus `epochs_done` (1-based), the time axis ASHA and the live table use.

    `training_iteration` would restart at 1 when a resumed trial continues from epoch k, `epochs_done`
    does not.
    """

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        first = dict(metrics[0], epochs_done=int(metrics[0]["epoch"]) + 1)
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)  # Ray: forwards to Tune


@dataclass
class TrialContext:
    """What every trial shares, passed once through the object store with tune.with_parameters."""

    base: dict[str, Any]  # the base run config (without `search`)
    storage: str  # where Ray Train keeps each trial's checkpoints (local path or URI)
    dataset_key: tuple  # DATASET_FIELDS of the dataset below
    dataset: list  # [ObjectRef of the ImageDataset]; in a list so Tune passes the reference, not the data


def dataset_key(cfg_data: Any) -> tuple:
    return tuple(getattr(cfg_data, f) for f in DATASET_FIELDS)


def _dataset_ref(cfg: RunConfig, ctx: TrialContext) -> Any:
    if dataset_key(cfg.data) == ctx.dataset_key:
        return ctx.dataset[0]
    from cnnsweep.data import load_dataset  # this trial searched a field that changes the loaded data

    return ray.put(load_dataset(cfg.data))  # Ray: shared by this trial's workers


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune trial function: one candidate = one TorchTrainer run on the connected cluster."""
    from cnnsweep.ray_train import build_trainer

    cfg = validate_config(apply_overrides(ctx.base, config["point"]["overrides"]))
    trial_id = tune.get_context().get_trial_id()  # Ray: stable across Tuner.restore
    trainer = build_trainer(cfg, _dataset_ref(cfg, ctx), storage_path=ctx.storage,
                            name=trial_run_name(trial_id), callbacks=[EpochReportCallback()])
    trainer.fit()  # Ray: a rerun with the same name resumes from that run's latest checkpoint


# ---------------------------------------------------------------------------- search + scheduling


def sample_point(search: SearchConfig, base_values: dict[str, Any], trial: Any) -> dict[str, Any]:
    """Optuna define-by-run space; the returned constants become the trial config's `point`."""
    overrides = sample_overrides(search, trial)
    same = all(base_values.get(k) == v and type(base_values.get(k)) is type(v) for k, v in overrides.items())
    return {"point": {"label": "baseline" if same else "", "overrides": overrides}}


def build_search_alg(search: SearchConfig, base: dict[str, Any],
                     max_concurrent: int) -> tuple[Any, dict[str, Any]]:
    """(Tune search algorithm, param_space): OptunaSearch (TPE or random) or a grid."""
    if search.algorithm == "grid":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        points = [p.model_dump() for p in expand_grid(search)]
        # Ray: TuneConfig.max_concurrent_trials only limits a `Searcher`; this generator limits itself
        return BasicVariantGenerator(max_concurrent=max_concurrent), {"point": tune.grid_search(points)}
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if search.algorithm == "optuna":
        sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=default_startup_trials(search))
    else:
        sampler = optuna.samplers.RandomSampler(seed=search.seed)
    # Ray: Optuna gets every intermediate result (on_trial_result) and each trial's final value
    warm = [baseline_params(search, base)] if search.baseline_first else None
    base_values = {p: get_dotted(base, p) for p in search.space}
    return OptunaSearch(space=partial(sample_point, search, base_values), metric=search.metric, mode=search.mode,
                        sampler=sampler, points_to_evaluate=warm), {}


def max_epochs(cfg: RunConfig, search: SearchConfig) -> int:
    """The longest trial, in epochs (ASHA's max_t), over every value `train.epochs` can take."""
    values = [cfg.train.epochs]
    if "train.epochs" in search.space:
        d = search.space["train.epochs"]
        values += [v for v in d.options if isinstance(v, int)] if d.kind == "choice" else [int(d.high)]
    values += [v["train.epochs"] for v in (search.ablation or {}).values() if "train.epochs" in v]
    return max(values)


def build_scheduler(search: SearchConfig, epochs: int) -> Any:
    if search.scheduler.name == "fifo":
        return tune.schedulers.FIFOScheduler()  # Ray
    s = search.scheduler
    return tune.schedulers.ASHAScheduler(  # Ray: rungs at grace_period x reduction_factor^k epochs
        time_attr="epochs_done", metric=search.metric, mode=search.mode, max_t=epochs,
        grace_period=s.grace_period, reduction_factor=s.reduction_factor)


# ---------------------------------------------------------------------------- resources


def trial_footprint(cfg: RunConfig, search: SearchConfig) -> dict[str, float]:
    """CPUs/GPUs one trial's TorchTrainer reserves (workers x per worker), worst case over the space."""
    variants = [{}] + [dict(v) for v in (search.ablation or {}).values()]
    for path, dist in search.space.items():
        if path.startswith("scaling."):
            values = dist.options if dist.kind == "choice" else [dist.low, dist.high]
            variants += [{path: v} for v in values if not hasattr(v, "kind")]
    need = {"CPU": 0.0, "GPU": 0.0}
    base = config_to_dict(cfg)
    for v in variants:
        try:
            s = validate_config(apply_overrides(base, v)).scaling
        except ConfigError:
            continue  # reported when that trial runs
        need["CPU"] = max(need["CPU"], s.num_workers * s.cpus_per_worker + TRIAL_DRIVER_RESOURCES["CPU"])
        need["GPU"] = max(need["GPU"], s.num_workers * s.gpus_per_worker if s.use_gpu else 0.0)
    return need


def derive_max_concurrent(requested: Any, cluster: dict[str, float], need: dict[str, float],
                          num_trials: int) -> int:
    """`auto`: as many trials as the cluster's CPUs and GPUs hold at once, so none waits forever."""
    if requested != "auto":
        return int(requested)
    fits = [math.floor(cluster.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0]
    n = min(fits) if fits else num_trials
    if n < 1:
        have = {k: cluster.get(k, 0.0) for k in need}
        raise ConfigError(f"one trial needs {need} (scaling.num_workers x per-worker resources) but the "
                          f"cluster has {have}: lower scaling.*, or set search.max_concurrent when an "
                          "autoscaler will add nodes")
    return max(1, min(n, num_trials))


# ---------------------------------------------------------------------------- storage helpers


def is_uri(path: str) -> bool:
    return "://" in str(path)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _exists(path: str) -> bool:
    import pyarrow.fs

    try:
        fs, p = pyarrow.fs.FileSystem.from_uri(path)
        return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound
    except (OSError, ValueError) as err:  # unknown scheme, no credentials, unreachable bucket
        raise ConfigError(f"cannot reach {path}: {err}") from None


def _copy_tree(src: str, dst: str) -> None:
    """Copy a folder between local paths and/or URIs (the best checkpoint, reports to s3://...)."""
    import pyarrow.fs

    if not is_uri(dst):
        import shutil

        shutil.rmtree(dst, ignore_errors=True)
        Path(dst).mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(src, dst)


def resolve_output(output: str) -> str:
    """Ray wants an absolute path or a URI for storage."""
    return output if is_uri(output) else str(Path(output).expanduser().resolve())


def _absolute_data_root(raw: dict[str, Any]) -> dict[str, Any]:
    """Trial actors run in their own folders: make a relative, existing data.root absolute."""
    root = (raw.get("data") or {}).get("root")
    if root and not is_uri(root) and Path(root).exists():
        raw = apply_overrides(raw, {"data.root": str(Path(root).resolve())})
    return raw


# ---------------------------------------------------------------------------- stopped trials' resources


def release_orphaned_placement_groups() -> int:
    """Remove the placement groups of this job whose creating actor died; returns how many.

    When ASHA stops a trial, Tune ends the trial actor, and the Ray Train controller it owns dies with
    it before it can remove its workers' placement group. Ray keeps such a group until the whole job
    ends, so the next trial would wait for CPUs that nobody uses. Ray Train's own PlacementGroupCleaner
    covers this only when the Ray state API (the dashboard) answers for this cluster, which a private
    instance without dashboard, or a machine running several Ray instances, does not give it.
    """
    from ray._private.state import state  # Ray: private accessor; the public table omits the creator
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup

    job = ray.get_runtime_context().get_job_id()
    live = {gcs_pb2.PlacementGroupTableData.PENDING, gcs_pb2.PlacementGroupTableData.CREATED,
            gcs_pb2.PlacementGroupTableData.RESCHEDULING}
    removed = 0
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        by_actor = pg.creator_actor_id.strip(b"\xff") != b""  # a driver-made group (Tune's) has a nil id
        if (by_actor and pg.creator_actor_dead and not pg.is_detached and pg.state in live
                and pg.creator_job_id.hex() == job):
            ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg.placement_group_id)))
            removed += 1
    return removed


class ReleaseStoppedTrials(tune.Callback):  # Ray: runs in this (the job's driver) process
    """After a trial ends, look for what its Train run left reserved, every few seconds for a while
    (the controller dies a moment after the trial actor; the GCS query costs ~0.1-0.5 s)."""

    def __init__(self, every_s: float = 2.0, watch_s: float = 60.0):
        self.every_s, self.watch_s = every_s, watch_s
        self._last, self._until = 0.0, 0.0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._until = time.monotonic() + self.watch_s

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._until = time.monotonic() + self.watch_s

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now > self._until or now - self._last < self.every_s:
            return
        self._last = now
        removed = release_orphaned_placement_groups()
        if removed:
            log.info("released %d placement group(s) of stopped trials", removed)


# ---------------------------------------------------------------------------- live progress


_progress_sink: Optional[Callable[[list[dict[str, Any]]], None]] = None


class SweepProgress(tune.Callback):  # Ray: Tune calls these in this process as trials change state
    """Feeds the CLI's live table. It reads the module-level sink rather than holding one, because
    Tune pickles its callbacks into the experiment state (for --resume) and a terminal does not pickle."""

    def __init__(self, metric: str, mode: str):
        self.metric, self.mode = metric, mode
        self._best: dict[str, float] = {}

    def _row(self, trial: Any) -> dict[str, Any]:
        last = trial.last_result or {}
        value = last.get(self.metric)
        if isinstance(value, (int, float)):
            old = self._best.get(trial.trial_id)
            better = old is None or (value > old if self.mode == "max" else value < old)
            self._best[trial.trial_id] = value if better else old
        return {"trial_id": trial.trial_id, "status": trial.status, "epochs": last.get("epochs_done", 0),
                "last": value, "best": self._best.get(trial.trial_id),
                "params": (trial.config.get("point") or {}).get("overrides", {}),
                "label": (trial.config.get("point") or {}).get("label", "")}

    def _emit(self, trials: list[Any]) -> None:
        if _progress_sink is not None:
            _progress_sink([self._row(t) for t in trials])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._emit(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials)


# ---------------------------------------------------------------------------- the Tuner


@dataclass
class SweepPlan:
    """Everything decided before Ray runs a trial (also what --resume must rebuild identically)."""

    cfg: RunConfig
    search: SearchConfig
    output: str  # absolute path or URI
    max_concurrent: int

    @property
    def experiment(self) -> str:
        return _join(self.output, EXPERIMENT)


def build_trainable(plan: SweepPlan, dataset: Any) -> Any:
    base = _absolute_data_root(config_to_dict(plan.cfg))
    ctx = TrialContext(base=base, storage=_join(plan.output, TRAIN_RUNS), dataset_key=dataset_key(plan.cfg.data),
                       dataset=[ray.put(dataset)])  # Ray: one copy in the object store for every trial
    return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), TRIAL_DRIVER_RESOURCES)  # Ray


def build_tuner(plan: SweepPlan, trainable: Any) -> tune.Tuner:
    search_alg, param_space = build_search_alg(plan.search, config_to_dict(plan.cfg), plan.max_concurrent)
    tune_config = tune.TuneConfig(  # Ray
        search_alg=search_alg, scheduler=build_scheduler(plan.search, max_epochs(plan.cfg, plan.search)),
        num_samples=1 if plan.search.algorithm == "grid" else plan.search.num_samples,
        max_concurrent_trials=None if plan.search.algorithm == "grid" else plan.max_concurrent,
        trial_dirname_creator=trial_dirname,
        trial_name_creator=trial_dirname)
    run_config = tune.RunConfig(  # Ray: results and TensorBoard logs under <output>/tune
        name=EXPERIMENT, storage_path=plan.output, verbose=0,
        # the experiment state --resume needs reaches storage every few seconds (Ray's default: 5 min)
        sync_config=tune.SyncConfig(sync_period=SYNC_PERIOD_URI_S if is_uri(plan.output) else SYNC_PERIOD_LOCAL_S),
        callbacks=[SweepProgress(plan.search.metric, plan.search.mode), ReleaseStoppedTrials(),
                   TBXLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=0))  # worker crashes are Ray Train's (scaling.max_failures)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def restore_tuner(plan: SweepPlan, trainable: Any) -> tune.Tuner:
    """--resume: finished trials are kept, unfinished ones continue from their checkpoints, errored rerun."""
    if not tune.Tuner.can_restore(plan.experiment):  # Ray
        raise ConfigError(f"--resume: no sweep to continue in {plan.output} (no {EXPERIMENT}/ experiment "
                          "state there); run without --resume to start one")
    _, param_space = build_search_alg(plan.search, config_to_dict(plan.cfg), plan.max_concurrent)
    return tune.Tuner.restore(plan.experiment, trainable=trainable, param_space=param_space or None,  # Ray
                              resume_unfinished=True, restart_errored=True)


# ---------------------------------------------------------------------------- results -> report


def _history(result: Any) -> list[dict[str, Any]]:
    df = result.metrics_dataframe  # Ray: every reported row of this trial
    if df is None or df.empty or "epoch" not in df:
        return []
    df = df[[c for c in REPORT_KEYS if c in df.columns]].dropna(subset=["epoch"])
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
    """The checkpoint of the trial's best epoch; Train keeps the best by val/acc, so fall back to the
    newest one still on disk when the sweep ranks by another metric."""
    best = record.best_row(metric, mode) or {}
    candidates = [best.get("checkpoint_path")] + [r.get("checkpoint_path") for r in reversed(record.history)]
    return next((c for c in candidates if c and _exists(c)), None)


def _report_dir(output: str, report_dir: Optional[str]) -> Path:
    if report_dir:
        return Path(report_dir)
    if is_uri(output):
        return Path("runs") / (output.rstrip("/").rsplit("/", 1)[-1] + "-report")
    return Path(output)


def summarize(plan: SweepPlan, records: list[TrialRecord], report_dir: Path) -> dict[str, Any]:
    """Write the report files, copy the best checkpoint to <output>/best, and return the summary.

    Works from `records` alone (built from Ray Tune's results, which it reads from storage), so a
    URI output degrades to: report files written locally, then uploaded by `save_summary`."""
    search = plan.search
    report = write_reports(records, search, report_dir)
    board = report["leaderboard"]
    scored = board[board[search.metric].notna()] if search.metric in board else board.iloc[:0]
    best: dict[str, Any] = {}
    if len(scored):
        top = next(r for r in records if r.trial_id == scored.iloc[0]["trial_id"])
        best = _best_summary(plan, top)
    summary = {"best": best, "trials": count_statuses(records), "output": plan.output,
               "report_dir": str(report_dir.resolve()), "files": report["files"],
               "importances": report["importances"], "metric": search.metric, "mode": search.mode,
               "algorithm": search.algorithm, "max_concurrent": plan.max_concurrent}
    return summary


def save_summary(plan: SweepPlan, summary: dict[str, Any], report_dir: Path) -> None:
    """summary.json next to the report; with a URI output the whole report is uploaded to <output>/report."""
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if is_uri(plan.output):
        _copy_tree(str(report_dir.resolve()), _join(plan.output, "report"))


def _best_summary(plan: SweepPlan, top: TrialRecord) -> dict[str, Any]:
    row = top.best_row(plan.search.metric, plan.search.mode) or {}
    source = _best_checkpoint(top, plan.search.metric, plan.search.mode)
    dest = _join(plan.output, "best")
    if source:
        _copy_tree(source, dest)
    cfg = validate_config(apply_overrides(config_to_dict(plan.cfg), top.overrides))
    return {"trial_id": top.trial_id, "label": top.label, "params": top.overrides, "config": config_to_dict(cfg),
            "val_acc": row.get("val/acc"), "val_loss": row.get("val/loss"), "epoch": row.get("epoch"),
            plan.search.metric: row.get(plan.search.metric),
            "checkpoint": dest if source else None, "source_checkpoint": source}


# ---------------------------------------------------------------------------- entry point


def plan_sweep(cfg: RunConfig, output: str, cluster: dict[str, float]) -> SweepPlan:
    search = load_search(cfg)
    need = trial_footprint(cfg, search)
    return SweepPlan(cfg, search, resolve_output(output),
                     derive_max_concurrent(search.max_concurrent, cluster, need, num_trials(search)))


def _check_fresh(plan: SweepPlan, resume: bool) -> None:
    if not resume and _exists(_join(plan.experiment, "tuner.pkl")):
        raise ConfigError(f"{plan.output} already holds a sweep: pass --resume to continue it, or choose "
                          "another --output")


def run_sweep(cfg: RunConfig, output: str, *, resume: bool = False, address: Optional[str] = None,
              report_dir: Optional[str] = None,
              on_progress: Optional[Callable[[list[dict[str, Any]]], None]] = None) -> dict[str, Any]:
    """Run (or with `resume`, continue) the sweep `cfg.search` describes; returns the summary."""
    global _progress_sink
    from cnnsweep.data import load_dataset
    from cnnsweep.ray_cluster import start_ray

    load_search(cfg)  # config errors before anything slow starts
    dataset = load_dataset(cfg.data)  # data errors too, before Ray starts
    plan = plan_sweep(cfg, output, start_ray(address))  # Ray: connect (or start a private instance)
    _check_fresh(plan, resume)
    if not is_uri(plan.output):
        save_config(cfg, Path(plan.output) / "sweep.yaml")
    trainable = build_trainable(plan, dataset)
    tuner = restore_tuner(plan, trainable) if resume else build_tuner(plan, trainable)
    start, _progress_sink = time.perf_counter(), on_progress
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Tune prints its banner on stdout; --json owns stdout
            results = tuner.fit()  # Ray: blocks until every trial finished, stopped early or errored
    finally:
        _progress_sink = None
    reports = _report_dir(plan.output, report_dir)
    summary = summarize(plan, collect_records(results, cfg), reports)
    summary |= {"seconds": round(time.perf_counter() - start, 1), "notes": list(dataset.notes)}
    _export_best(plan, summary)
    save_summary(plan, summary, reports)
    return summary


def _export_best(plan: SweepPlan, summary: dict[str, Any]) -> None:
    """search.export: the best trial's checkpoint -> <output>/best/model.onnx, verified against PyTorch.
    A failed export is reported in the summary; the sweep's results stay as they are."""
    if not plan.search.export or not summary.get("best") or is_uri(plan.output):
        return
    from cnnsweep.export import ExportError, export_best

    try:
        report = export_best(plan.output)
        summary["best"]["onnx"] = report.onnx if report.ok else None
        summary["best"]["onnx_verification"] = report.verification
    except (ExportError, ValueError, OSError) as err:  # CheckpointError and DataError are ValueErrors
        summary["best"]["onnx"] = None
        summary["notes"].append(f"ONNX export of the best trial failed: {err}")
