"""Prediction rows -> CSV (`id,label,class_name,prob`, then top-k and true-label columns when present)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable


def csv_columns(top_k: int = 1, with_truth: bool = False) -> list[str]:
    cols = ["id", "label", "class_name", "prob"]
    if top_k > 1:
        cols += [f"top{r}_{k}" for r in range(1, top_k + 1) for k in ("label", "class_name", "prob")]
    return cols + (["true_label"] if with_truth else [])


def write_rows(path: str | Path, rows: Iterable[dict], top_k: int = 1, with_truth: bool = False) -> Path:
    """Stream rows into `path` atomically (temp file + rename: a failed run leaves no half CSV)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=csv_columns(top_k, with_truth))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
