"""Ablation comparison for sweep targets: per searched factor, the effect of each value on accuracy and
on every class, with train/validation curves per value (mean +- std over its trials).

Reads the sweep's own files (sweep.yaml, leaderboard.csv, history.csv) and reuses cnnsweep.sweep.report's
grouping (`factor_values`), so values are labelled and binned exactly as in the sweep's ablation.csv.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from cnnsweep import metrics as M
from cnnsweep.analysis.charts import curves_with_spread
from cnnsweep.analysis.predictions import Predictions
from cnnsweep.sweep.report import TrialRecord, factor_values, label_order

CURVES = [M.TRAIN_LOSS, M.VAL_LOSS, M.VAL_ACC]
SHOWN_CLASS_CHANGES = 3  # classes listed as most improved / most hurt per value


def _parse(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)  # the leaderboard writes non-scalars as JSON
        except ValueError:
            return v
    return v


def records_from_leaderboard(board: pd.DataFrame) -> list[TrialRecord]:
    params = [c for c in board.columns if c.startswith("param:")]
    out = []
    for _, row in board.iterrows():
        overrides = {c[len("param:"):]: _parse(row[c]) for c in params if pd.notna(row[c])}
        label = row["label"] if "label" in board and isinstance(row["label"], str) else ""
        out.append(TrialRecord(str(row["trial_id"]), str(row.get("status", "")), overrides, label))
    return out


def sweep_factors(sweep_dir: Path, board: pd.DataFrame) -> list[str]:
    """search.factors from sweep.yaml; without it, the leaderboard's parameter columns (or `variant`)."""
    try:
        from cnnsweep.config import load_config
        from cnnsweep.sweep.space import load_search

        return load_search(load_config(sweep_dir / "sweep.yaml")).factors
    except (ValueError, OSError):
        params = [c[len("param:"):] for c in board.columns if c.startswith("param:")]
        return params if params and "label" not in board else ["variant"]


def _curve_arrays(history: pd.DataFrame, ids: list[str]) -> dict[str, np.ndarray]:
    rows = history[history["trial_id"].astype(str).isin(ids)]
    if rows.empty:
        return {}
    epochs = int(rows["epoch"].max()) + 1
    out = {}
    for metric in CURVES:
        if metric not in rows:
            continue
        arr = np.full((len(ids), epochs), np.nan)
        for i, tid in enumerate(ids):
            r = rows[rows["trial_id"].astype(str) == tid]
            arr[i, r["epoch"].astype(int).to_numpy()] = r[metric].to_numpy(dtype=float)
        out[metric] = arr
    return out


def _mean_curves(arrays: dict[str, np.ndarray]) -> dict[str, list[Optional[float]]]:
    """The figure's lines: per metric, the mean over the value's trials per epoch (None: no trial got there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN epoch
        return {m: [None if np.isnan(x) else round(float(x), 6) for x in np.nanmean(a, axis=0)]
                for m, a in arrays.items()}


def _class_changes(recall: np.ndarray, ref: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    delta = recall - ref
    order = np.argsort(delta, kind="stable")
    def pick(idx):
        return [{"class_id": int(c), "name": class_names[c], "delta_recall": float(delta[c])}
                for c in idx if delta[c] != 0]
    return {"better": pick(order[::-1][:SHOWN_CLASS_CHANGES]), "worse": pick(order[:SHOWN_CLASS_CHANGES]),
            "num_better": int((delta > 0).sum()), "num_worse": int((delta < 0).sum())}


def _reference(values: pd.Series) -> str:
    """Baseline when the grid has one, else the value most trials share."""
    return "baseline" if "baseline" in set(values) else str(values.value_counts().index[0])


def factor_effect(factor: str, values: pd.Series, preds: dict[str, Predictions], history: pd.DataFrame,
                  class_names: list[str], out: Path) -> Optional[dict[str, Any]]:
    values = values[[t for t in values.index if t in preds]]
    if values.nunique() < 2:
        return None
    ref = _reference(values)
    n = len(class_names)
    recall_of = {t: np.bincount(p.labels[p.pred == p.labels], minlength=n) / np.maximum(1, np.bincount(p.labels, minlength=n))
                 for t, p in preds.items()}
    rows, series = [], {}
    ref_recall = np.mean([recall_of[t] for t in values[values == ref].index], axis=0)
    groups = values.groupby(values).groups
    for value in label_order(groups):  # in increasing value (bins of a float factor), not string order
        ids = [str(t) for t in groups[value]]
        acc = np.array([(preds[t].pred == preds[t].labels).mean() for t in ids])
        recall = np.mean([recall_of[t] for t in ids], axis=0)
        row = {"value": str(value), "num_trials": len(ids), "trials": ids, "accuracy_mean": float(acc.mean()),
               "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None, "accuracy_best": float(acc.max()),
               "per_class_recall": [round(float(r), 4) for r in recall], "reference": str(value) == ref}
        if str(value) != ref:
            row |= {"delta_accuracy_vs_reference": float(acc.mean() - np.mean(
                [(preds[t].pred == preds[t].labels).mean() for t in values[values == ref].index])),
                    "classes": _class_changes(recall, ref_recall, class_names)}
        series[str(value)] = _curve_arrays(history, ids)
        row["curves"] = _mean_curves(series[str(value)])
        rows.append(row)
    name = "ablation_" + "".join(c if c.isalnum() or c in "._-" else "_" for c in factor) + ".png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an epoch no trial of a value reached
        curves_with_spread(series, CURVES, factor, out / name)
    return {"factor": factor, "reference": ref, "values": rows, "figure": name}


def ablation_report(sweep_dir: Path, preds: dict[str, Predictions], class_names: list[str],
                    out: Path) -> dict[str, Any]:
    """{"factors": [...], "metric": split accuracy per trial}: one entry per factor with >= 2 values."""
    ids = {"trial_id": str}  # an all-digit id ("00001") must not become the number 1: it keys the predictions
    board = pd.read_csv(sweep_dir / "leaderboard.csv", dtype=ids)
    hist_file = sweep_dir / "history.csv"
    history = pd.read_csv(hist_file, dtype=ids) if hist_file.is_file() else pd.DataFrame(columns=["trial_id", "epoch"])
    records = records_from_leaderboard(board)
    factors = []
    for factor in sweep_factors(sweep_dir, board):
        effect = factor_effect(factor, factor_values(records, factor), preds, history, class_names, out)
        if effect:
            factors.append(effect)
    return {"factors": factors, "num_trials": len(preds),
            "accuracy_per_trial": {t: float((p.pred == p.labels).mean()) for t, p in preds.items()}}
