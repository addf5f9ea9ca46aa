"""What `cnnsweep analyze TARGET` means: a sweep folder (its top-K trials), a run folder, a checkpoint
(file or folder) or an `.onnx` file, each loaded as one or more `Candidate`s.

Path resolution is the exporter's (cnnsweep.export.sources), so `analyze` and `export` accept the same
paths and pick the same checkpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cnnsweep.errors import AnalysisError
from cnnsweep.analysis.predictor import TorchPredictor
from cnnsweep.checkpoint import CheckpointError, load_model_from_checkpoint
from cnnsweep.config import ConfigError, RunConfig, from_saved_config
from cnnsweep.errors import ExportError
from cnnsweep.export.sources import is_sweep_dir, read_leaderboard, resolve_sources

MAX_SWEEP_TRIALS = 32  # trials loaded for the ablation's per-class effects (each is predicted once)


@dataclass
class Candidate:
    """One model to analyze."""

    name: str  # "top1 (ab12)", "checkpoint", "model.onnx"
    trial_id: Optional[str]
    predictor: Any  # TorchPredictor | cnnsweep.export.OnnxRunner: split_logits(uint8 NCHW) -> logits
    preprocess: Any
    class_names: list[str]
    config: RunConfig
    source: str
    model: Any = None  # the torch module (None for ONNX: Grad-CAM and visualizations need PyTorch)


@dataclass
class Target:
    kind: str  # sweep | run | checkpoint | onnx
    path: Path
    candidates: list[Candidate]  # the models the report is about (top-K of a sweep)
    sweep_trials: list[Candidate] = field(default_factory=list)  # every trial with a checkpoint (sweeps)


def _from_checkpoint(path: Path, name: str, trial_id: Optional[str] = None) -> Candidate:
    lm = load_model_from_checkpoint(path)
    return Candidate(name, trial_id, TorchPredictor(lm.model, lm.preprocess), lm.preprocess, lm.class_names,
                     lm.config, str(lm.path), lm.model)


def _from_onnx(path: Path) -> Candidate:
    from cnnsweep.export.runner import OnnxRunner

    try:  # the bytes checked here are the bytes every (Ray) worker runs: the file is read once
        runner = OnnxRunner.load(path, num_threads=1, device="cpu")  # one thread: workers share the cores
    except ExportError as err:
        raise AnalysisError(str(err)) from None
    try:
        info = runner.info
        cfg = from_saved_config(info.config)  # written by an older cnnsweep too
    except ConfigError as err:
        raise AnalysisError(f"{path}: the embedded config is not usable ({err})") from None
    return Candidate(path.name, None, runner, info.preprocess, info.class_names, cfg, str(path))


def _trial_id(label: str) -> Optional[str]:
    found = re.search(r"\((.+)\)$", label)  # read_leaderboard labels rows "top<rank> (<trial_id>)"
    return found.group(1) if found else None


def _from_sweep(path: Path, top: int) -> Target:
    sources = read_leaderboard(path, MAX_SWEEP_TRIALS)
    trials = [_from_checkpoint(s.checkpoint, s.label, _trial_id(s.label)) for s in sources]
    return Target("sweep", path, trials[:top], trials)


def load_target(target: str | Path, top: int = 3) -> Target:
    """The models TARGET names; CheckpointError / AnalysisError (one line) for anything unusable."""
    p = Path(target)
    if top < 1:
        raise AnalysisError(f"--top must be >= 1, got {top}")
    if not p.exists():
        raise AnalysisError(f"{p}: no such sweep folder, run folder, checkpoint or .onnx file")
    if p.is_file() and p.suffix == ".onnx":
        return Target("onnx", p, [_from_onnx(p)])
    if is_sweep_dir(p) and (p / "leaderboard.csv").is_file():
        return _from_sweep(p, top)
    try:
        source = resolve_sources(p)[0]
    except CheckpointError as err:
        raise AnalysisError(f"{err} (expected a sweep folder, a run folder, a checkpoint or an .onnx file)") from None
    kind = "run" if source.label == "run" else "checkpoint"
    return Target(kind, p, [_from_checkpoint(source.checkpoint, kind)])
