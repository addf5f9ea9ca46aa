"""Prediction rows -> CSV (`id,label,class_name,prob`, then top-k and true-label columns when present)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable

from cnnsweep.safe_text import csv_cell


def csv_columns(top_k: int = 1, with_truth: bool = False) -> list[str]:
    cols = ["id", "label", "class_name", "prob"]
    if top_k > 1:
        cols += [f"top{r}_{k}" for r in range(1, top_k + 1) for k in ("label", "class_name", "prob")]
    return cols + (["true_label"] if with_truth else [])


def _cell(v: Any) -> Any:
    # ids are file names and class names come from the model: quoted when a spreadsheet would run them
    return f"{v:.6g}" if isinstance(v, float) else csv_cell(v)


def write_rows(path: str | Path, rows: Iterable[dict], top_k: int = 1, with_truth: bool = False) -> Path:
    """Stream rows into `path` atomically (temp file + rename: a failed run leaves no half CSV)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=csv_columns(top_k, with_truth))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(v) for k, v in row.items()})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
