"""metrics.json of `cnnsweep analyze`: every number the report page shows.

`AnalysisMetrics` is the file's schema (format version `FORMAT_VERSION`): `analyze_target` returns one,
`save_metrics` writes it and `load_metrics` reads it back, so a file of another version or shape is one
AnalysisError line naming it. The parts other packages read (target, data, models and their scores) are
typed; each page section's part (per_class, calibration, ...) is a free-form map built by the module
that draws it (README.md, "Page sections and their metrics.json keys", lists their keys), so the schema
fixes its place and type, not its inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from cnnsweep.config import load_versioned_json
from cnnsweep.errors import AnalysisError
from cnnsweep.atomic import atomic_write_json

METRICS_FILE = "metrics.json"
# 1: the first versioned layout. The unversioned files before it are not read back: no code read them.
FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TargetInfo(_Strict):
    kind: Literal["sweep", "run", "checkpoint", "onnx"]
    path: str


class DataInfo(_Strict):
    name: str  # the dataset's registry name
    root: Optional[str] = None  # None for the embedded digits
    num_images: int  # in the analyzed split
    class_names: list[str]


class ModelScores(_Strict):
    """scores.summary_metrics of one model on the split (its `top5_accuracy` key is scores.TOP_K's)."""

    num_images: int
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    top5_accuracy: float
    top_k: int  # the k of top5_accuracy: fewer than 5 where there are few classes
    log_loss: float
    num_errors: int
    seconds: float
    images_per_s: Optional[float] = None  # None when the prediction took no measurable time


class ModelResult(_Strict):
    name: str  # "top1 (ab12c_00001)", "checkpoint", "model.onnx"
    trial_id: Optional[str] = None  # sweep targets only
    source: str  # the checkpoint or ONNX file
    predictions: list[str]  # file names in the report folder
    summary: ModelScores


class AnalysisMetrics(_Strict):
    version: int = FORMAT_VERSION
    target: TargetInfo
    split: str  # the split analyzed (another than asked for when it was missing: see notes)
    notes: list[str] = []
    output: str  # the report folder
    data: DataInfo
    models: list[ModelResult] = Field(min_length=1)  # the first is the one the per-model sections show
    per_class: dict[str, Any]
    calibration: Optional[dict[str, Any]] = None
    data_analysis: dict[str, Any]
    ablation: Optional[dict[str, Any]] = None  # sweep targets
    atlas: Optional[dict[str, Any]] = None  # two models or more
    explain: Optional[dict[str, Any]] = None  # PyTorch targets, unless turned off
    seconds: Optional[float] = None  # the whole analysis, once it is done

    def to_json_dict(self) -> dict[str, Any]:
        """The file's object: every field, unset ones as null."""
        return self.model_dump()


def save_metrics(metrics: AnalysisMetrics, path: str | Path) -> Path:
    """Write `metrics` to `path` whole (a failed write keeps the previous file)."""
    return atomic_write_json(path, metrics.to_json_dict(), indent=1, default=str)


def load_metrics(path: str | Path) -> AnalysisMetrics:
    """metrics.json (or a report folder holding one) as AnalysisMetrics; AnalysisError, one line, otherwise."""
    p = Path(path)
    p = p / METRICS_FILE if p.is_dir() else p
    return load_versioned_json(p, AnalysisMetrics, FORMAT_VERSION, AnalysisError, what="an analysis metrics file",
                               read_as="analysis metrics", rerun="run `cnnsweep analyze` again")
