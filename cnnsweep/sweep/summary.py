"""summary.json: what a finished sweep says about itself (and what `cnnsweep tune --json` prints).

`SweepSummary` is the file's schema (format version `FORMAT_VERSION`): `save_summary_file` writes through
it and `load_summary` reads through it, so a file of another version or shape is one ConfigError line
naming it. No ray here: the sweep's writer is `cnnsweep.distributed.tune.results`, but anything below the
Ray layer (analysis, export, notebooks) may read the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

from cnnsweep.atomic import atomic_write_json
from cnnsweep.config import ConfigError, load_versioned_json

SUMMARY_FILE = "summary.json"
# 1: the first versioned layout. The unversioned files before it are not read back: no code read them,
# and their best trial held its metric under a key named by the sweep (now `metric_value`).
FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)  # run_sweep fills fields in as it goes


class BestTrial(_Strict):
    """The best trial: its best epoch by the sweep's metric, and where its checkpoint was copied."""

    trial_id: str
    label: str = ""
    params: dict[str, Any] = {}  # the trial's overrides: dotted config path -> value
    config: dict[str, Any]  # its whole resolved run config (config_to_dict)
    metric_value: Optional[float] = None  # that epoch's value of `SweepSummary.metric`
    val_acc: Optional[float] = None
    val_loss: Optional[float] = None
    epoch: Optional[int] = None  # 0-based
    checkpoint: Optional[str] = None  # <output>/best, None when no checkpoint was left to copy
    source_checkpoint: Optional[str] = None  # the trial's checkpoint it was copied from
    onnx: Optional[str] = None  # search.export: best/model.onnx, None when the export failed
    onnx_verification: Optional[dict[str, Any]] = None  # the export's ONNX-vs-PyTorch check, as it reports it


class TrialCounts(_Strict):
    finished: int = 0
    stopped_early: int = 0
    errored: int = 0
    total: int = 0


class EnsembleExport(_Strict):
    """search.export {top: K, ensemble: true}: the exported ensemble of the top K trials."""

    onnx: str
    verification: dict[str, Any]  # as the export reports it
    metrics: dict[str, Any]  # the ensemble's measured metrics, keyed like cnnsweep.metrics
    members: list[str]  # trial ids, best first


class SweepSummary(_Strict):
    version: int = FORMAT_VERSION
    best: Optional[BestTrial] = None  # None when no trial reported the metric
    trials: TrialCounts
    output: str
    report_dir: str
    files: list[str]  # report files, relative to report_dir
    importances: dict[str, float]  # Optuna's parameter importances; {} when not computed
    metric: str
    mode: str
    algorithm: str
    max_concurrent: int
    seconds: Optional[float] = None  # the sweep's wall time, once it is known
    notes: list[str] = []
    analysis: Optional[str] = None  # search.analyze: report.html, None when not run or failed
    ensemble: Optional[EnsembleExport] = None
    exports: Optional[list[str]] = None  # search.export {top: K}: one ONNX file per trial

    def to_json_dict(self) -> dict[str, Any]:
        """The file's (and `--json`'s) object: every field, unset ones as null."""
        return self.model_dump()


def save_summary_file(summary: SweepSummary, path: str | Path) -> Path:
    """Write `summary` to `path` whole (the previous file stays if the write fails)."""
    return atomic_write_json(path, summary.to_json_dict(), indent=2, default=str)


def load_summary(path: str | Path) -> SweepSummary:
    """summary.json (or a sweep folder holding one) as SweepSummary; ConfigError, one line, otherwise."""
    p = Path(path)
    p = p / SUMMARY_FILE if p.is_dir() else p
    return load_versioned_json(p, SweepSummary, FORMAT_VERSION, ConfigError, what="a sweep summary",
                               read_as="a sweep summary", rerun="read it with the cnnsweep that wrote it, or "
                               "run the sweep again")
