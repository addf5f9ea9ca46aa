"""What `cnnsweep export PATH` accepts: a checkpoint (file or folder), a run folder, or a sweep folder.

Each resolves to (checkpoint, default output) pairs:
- checkpoint file/folder            -> <folder>/model.onnx
- run folder (`cnnsweep train`)     -> result.json's best (else last) checkpoint -> <run>/model.onnx
- sweep folder, no --top            -> <sweep>/best/ -> <sweep>/best/model.onnx
- sweep folder, --top N             -> the first N rows of <sweep>/leaderboard.csv
                                       -> <sweep>/exports/top<rank>_<trial_id>.onnx
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cnnsweep.checkpoint import CHECKPOINT_FILE, CheckpointError, find_checkpoint_file

MODEL_FILE = "model.onnx"
LEADERBOARD = "leaderboard.csv"
BEST_DIR = "best"
# leaderboard.csv column names, first match wins (the sweep writes `checkpoint` and `trial_id`).
CHECKPOINT_COLUMNS = ("checkpoint", "checkpoint_path", "best_checkpoint")
TRIAL_COLUMNS = ("trial_id", "trial")


@dataclass
class ExportSource:
    checkpoint: Path
    output: Path  # default .onnx path
    label: str  # for messages: "best", "top2_ab12cd", "checkpoint"
    trial_id: str = ""  # leaderboard rows only
    row: Optional[dict] = None  # the leaderboard row (metrics as text), leaderboard rows only


def is_sweep_dir(path: Path) -> bool:
    return path.is_dir() and ((path / LEADERBOARD).is_file() or (path / BEST_DIR).is_dir())


def _run_checkpoint(run: Path) -> Optional[Path]:
    """result.json of `cnnsweep train`: best checkpoint first, then the last one."""
    result = run / "result.json"
    if not result.is_file():
        return None
    try:
        summary = json.loads(result.read_text())
    except json.JSONDecodeError:
        return None
    for key in ("best_checkpoint", "checkpoint"):
        if summary.get(key) and Path(summary[key]).exists():
            return find_checkpoint_file(summary[key])
    return None


def _resolve(sweep: Path, text: str) -> Path:
    p = Path(text)
    return p if p.is_absolute() or p.exists() else sweep / p  # relative paths are relative to the sweep


def _trial_checkpoint(path: Path) -> Path:
    """The leaderboard's checkpoint, or, when Ray Train has since deleted it (it keeps only
    `train.num_to_keep` per trial, and ties in the metric may keep other epochs than the row names),
    the newest checkpoint still in that trial's run folder: the same fallback `best/` uses."""
    try:
        return find_checkpoint_file(path)
    except CheckpointError:
        if not path.parent.is_dir():
            raise
        return find_checkpoint_file(path.parent)


def read_leaderboard(sweep: Path, top: int) -> list[ExportSource]:
    """The best `top` trials, in leaderboard order (the file is sorted best first)."""
    board = sweep / LEADERBOARD
    if not board.is_file():
        raise CheckpointError(f"{sweep}: --top needs {LEADERBOARD} in the sweep folder")
    with open(board, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise CheckpointError(f"{board}: no trials")
    ckpt_col = next((c for c in CHECKPOINT_COLUMNS if c in rows[0]), None)
    if ckpt_col is None:
        raise CheckpointError(f"{board}: no checkpoint column (expected one of {CHECKPOINT_COLUMNS})")
    trial_col = next((c for c in TRIAL_COLUMNS if c in rows[0]), None)
    rows = [r for r in rows if r.get(ckpt_col)]  # trials that ended without a checkpoint
    if "rank" in rows[0]:
        rows.sort(key=lambda r: float(r["rank"] or "inf"))
    out = []
    for rank, row in enumerate(rows[:top], start=1):
        trial = (row.get(trial_col) or f"trial{rank}") if trial_col else f"trial{rank}"
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in trial)
        out.append(ExportSource(_trial_checkpoint(_resolve(sweep, row[ckpt_col])),
                                sweep / "exports" / f"top{rank}_{safe}.onnx", f"top{rank} ({trial})", trial, row))
    return out


def resolve_sources(path: str | Path, top: Optional[int] = None) -> list[ExportSource]:
    """Every checkpoint `cnnsweep export PATH [--top N]` should export, with its default output."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint, run or sweep folder")
    if top is not None and top < 1:
        raise CheckpointError(f"--top must be >= 1, got {top}")
    if is_sweep_dir(p):
        if top is not None:
            return read_leaderboard(p, top)
        if (p / BEST_DIR).is_dir():
            return [ExportSource(find_checkpoint_file(p / BEST_DIR), p / BEST_DIR / MODEL_FILE, "best")]
        return [ExportSource(s.checkpoint, p / BEST_DIR / MODEL_FILE, "best") for s in read_leaderboard(p, 1)]
    if top is not None:
        raise CheckpointError(f"{p}: --top needs a sweep folder (with {LEADERBOARD})")
    if p.is_file():
        return [ExportSource(find_checkpoint_file(p), p.parent / MODEL_FILE, "checkpoint")]
    if (p / CHECKPOINT_FILE).is_file():
        return [ExportSource(p / CHECKPOINT_FILE, p / MODEL_FILE, "checkpoint")]
    ckpt = _run_checkpoint(p) or find_checkpoint_file(p)
    return [ExportSource(ckpt, p / MODEL_FILE, "run")]
