"""What a finished sweep leaves behind: leaderboard, per-epoch history, ablation summary, curves, importances.

Pure pandas + matplotlib (+ optuna for importances): no ray, so the report can be rebuilt from a copy of
the results on a laptop. `cnnsweep.distributed.tune` turns Ray Tune's results into `TrialRecord`s and calls
`write_reports`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from cnnsweep.atomic import atomic_write, atomic_write_json, atomic_write_text
from cnnsweep.safe_text import csv_cell, csv_header, plot_text, printable
from cnnsweep.sweep.space import SearchConfig, optuna_distributions
from cnnsweep import metrics as M

log = logging.getLogger(__name__)

CURVE_METRICS = (M.VAL_LOSS, M.VAL_ACC)  # the error / learning curves the report plots
SHOWN_METRICS = (M.VAL_ACC, M.VAL_LOSS, M.VAL_PRECISION, M.VAL_RECALL, M.VAL_F1, M.TRAIN_LOSS, M.TEST_ACC)
MAX_CATEGORIES = 6  # an integer factor with more distinct values is binned into quantile ranges
MAX_BINS = 4  # quantile ranges of a binned factor; a float factor with more distinct values is binned


@dataclass
class TrialRecord:
    """One trial, as the report needs it: what was tried and what every epoch reported."""

    trial_id: str
    status: str  # finished | stopped_early | errored
    overrides: dict[str, Any]  # dotted config path -> value (what makes this trial differ from the base)
    label: str = ""  # grid: the point's name ("baseline", an ablation variant); else ""
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch, in order
    params: dict[str, Any] = field(default_factory=dict)  # Optuna's own parameter values (for importances)
    error: Optional[str] = None

    def __post_init__(self) -> None:
        # ids, labels and values can come from trial folder names: an undecodable name would not fit in
        # a pandas string column (nor a UTF-8 CSV), so every shown string is made printable once, here
        self.trial_id, self.label = printable(self.trial_id), printable(self.label)
        self.error = None if self.error is None else printable(self.error)
        self.overrides = {printable(k): _printable(v) for k, v in self.overrides.items()}
        self.history = [{k: _printable(v) for k, v in row.items()} for row in self.history]

    def best_row(self, metric: str, mode: str) -> Optional[dict[str, Any]]:
        rows = [r for r in self.history if _finite(r.get(metric))]
        if not rows:
            return None
        pick = max if mode == "max" else min
        return pick(rows, key=lambda r: r[metric])


def _printable(v: Any) -> Any:
    return printable(v) if isinstance(v, str) else v


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def classify(epochs_done: int, epochs_planned: int, errored: bool) -> str:
    if errored:
        return "errored"
    return "finished" if epochs_done >= epochs_planned else "stopped_early"


def count_statuses(records: list[TrialRecord]) -> dict[str, int]:
    out = {"finished": 0, "stopped_early": 0, "errored": 0}
    for r in records:
        out[r.status] = out.get(r.status, 0) + 1
    out["total"] = len(records)
    return out


# ---------------------------------------------------------------------------- tables


def build_leaderboard(records: list[TrialRecord], search: SearchConfig) -> pd.DataFrame:
    """One row per trial, best first: its best epoch by the sweep metric, its parameters, its checkpoint."""
    rows = []
    for r in records:
        best = r.best_row(search.metric, search.mode) or {}
        row = {"trial_id": r.trial_id, "status": r.status, "label": r.label or None,
               "epochs": int(r.history[-1]["epoch"]) + 1 if r.history else 0, "best_epoch": best.get("epoch")}
        row |= {m: best.get(m) for m in SHOWN_METRICS}
        row |= {f"param:{k}": _plain(v) for k, v in r.overrides.items()}
        row["checkpoint"] = best.get("checkpoint_path")
        row["error"] = _error_line(r.error)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(search.metric, ascending=search.mode == "min", na_position="last")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.dropna(axis=1, how="all").reset_index(drop=True)


def build_history(records: list[TrialRecord]) -> pd.DataFrame:
    """Long format: one row per trial and epoch, with every reported metric."""
    frames = [pd.DataFrame(r.history).assign(trial_id=r.trial_id) for r in records if r.history]
    if not frames:
        return pd.DataFrame(columns=["trial_id", "epoch"])
    hist = pd.concat(frames, ignore_index=True)
    front = ["trial_id", "epoch"]
    return hist[front + [c for c in hist.columns if c not in front]]


def _error_line(error: Optional[str]) -> Optional[str]:
    """One line for the leaderboard from a Ray-wrapped traceback: the exception line (with the line after
    it when it ends in ':', as Ray's wrappers do), plus the traceback's last line, which is where a
    cnnsweep error's advice ends up when Ray truncates the worker's output."""
    if not error:
        return None
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    named = [i for i, ln in enumerate(lines) if "Error:" in ln or "Exception:" in ln]
    i = named[-1] if named else len(lines) - 1
    parts = lines[i:i + 2] if lines[i].endswith(":") else lines[i:i + 1]
    if lines[-1] not in parts:
        parts.append("... " + lines[-1])
    return " ".join(parts)[:400]


def _plain(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)


def _plain_range(*xs: float) -> bool:
    return all(x == 0 or 0.01 <= abs(x) < 1000 for x in xs)


def _number(x: float, digits: int, scientific: Optional[bool] = None) -> str:
    """`digits` significant digits; scientific with a short exponent ("3.2e-3") outside 0.01..1000
    (or when `scientific` says so: both ends of a range use one notation)."""
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    if not (scientific if scientific is not None else not _plain_range(x)):
        return f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _distinct_labels(numbers: pd.Series, label) -> pd.Series:
    """label(values, digits) with the fewest digits (>= 2) that keeps distinct groups distinct."""
    groups = numbers.nunique()
    for digits in range(2, 18):
        out = label(numbers, digits)
        if out.nunique() == groups:
            return out
    return out


def _bin_labels(numeric: pd.Series, factor: str) -> pd.Series:
    """Quantile bins of a continuous factor, each labelled with the range of its values ("lr 1.0e-3–3.2e-3")."""
    bins = pd.qcut(numeric.rank(method="dense"), q=min(MAX_BINS, max(2, numeric.nunique() // 2)),
                   labels=False, duplicates="drop")
    name = factor.rsplit(".", 1)[-1]
    lo, hi = numeric.groupby(bins).transform("min"), numeric.groupby(bins).transform("max")
    return _distinct_labels(bins, lambda _b, d: pd.Series(
        [f"{name} {_number(a, d, not _plain_range(a, b))}–{_number(b, d, not _plain_range(a, b))}"
         for a, b in zip(lo, hi)], index=numeric.index))


def factor_values(records: list[TrialRecord], factor: str) -> pd.Series:
    """The value of `factor` per trial, as a short category label.

    Sampled floats (more than MAX_BINS distinct non-integer values), and integers with more than
    MAX_CATEGORIES values, are binned into at most MAX_BINS quantile ranges; other values keep one label each.
    `variant` is the grid point's label; a parameter a trial did not sample (its condition failed)
    shows as "(not sampled)", so the base config's value is not confused with a searched one.
    """
    if factor == "variant":
        raw = pd.Series({r.trial_id: r.label.split(" seed=")[0] for r in records}, dtype=object)
    else:
        raw = pd.Series({r.trial_id: r.overrides.get(factor, "(not sampled)") for r in records}, dtype=object)
    is_num = raw.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
    out = raw.map(str)
    numeric = raw[is_num].astype(float)
    if numeric.empty:
        return out
    continuous = (numeric != numeric.round()).any()
    if numeric.nunique() > (MAX_BINS if continuous else MAX_CATEGORIES):
        out[is_num] = _bin_labels(numeric, factor)
    elif continuous:
        out[is_num] = _distinct_labels(numeric, lambda v, d: v.map(lambda x: _number(x, d)))
    return out


def label_order(labels) -> list[str]:
    """Distinct labels in increasing order of the first number in each (bins, numeric values), others after."""
    def key(label: str):
        found = re.search(r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?", label)
        return (0, float(found.group()), label) if found else (1, 0.0, label)
    return sorted(set(map(str, labels)), key=key)


def build_ablation(records: list[TrialRecord], search: SearchConfig) -> pd.DataFrame:
    """For each searched factor and each of its values: trials, mean/std/best of their best metric."""
    scores = pd.Series({r.trial_id: (r.best_row(search.metric, search.mode) or {}).get(search.metric)
                        for r in records}, dtype=float)
    rows = []
    for factor in search.factors:
        values = factor_values(records, factor)
        groups = values.groupby(values).groups
        for value in label_order(groups):
            ids = groups[value]
            s = scores.loc[list(ids)].dropna()
            best = (s.max() if search.mode == "max" else s.min()) if len(s) else None
            rows.append({"factor": factor, "value": value, "num_trials": len(ids), "num_scored": len(s),
                         f"mean {search.metric}": s.mean() if len(s) else None,
                         f"std {search.metric}": s.std() if len(s) > 1 else None,
                         f"best {search.metric}": best})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- plots


def factor_curves_figure(history: pd.DataFrame, values: pd.Series, factor: str):
    """Validation loss and accuracy per epoch, one line per value of `factor` (mean over its trials)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), constrained_layout=True)  # no pyplot: headless, nothing kept open
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(CURVE_METRICS))
    hist = history.assign(value=history["trial_id"].map(values))
    for ax, metric in zip(axes, CURVE_METRICS):
        if metric not in hist:
            continue
        curves = hist.groupby(["value", "epoch"])[metric].mean().unstack(0)
        for value in label_order(curves.columns):
            line = curves[value].dropna()
            ax.plot(line.index + 1, line.values, marker="o", ms=3, label=plot_text(value))
        ax.set(xlabel="epoch", ylabel=metric, title=plot_text(f"{metric} by {factor}"))
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, title=plot_text(factor), title_fontsize=8)
    return fig


def plot_factor_curves(history: pd.DataFrame, values: pd.Series, factor: str, path: Path) -> Path:
    """factor_curves_figure as a PNG at `path` (written whole: temp + replace)."""
    fig = factor_curves_figure(history, values, factor)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


def to_csv(table: pd.DataFrame) -> str:
    """The table as CSV text for a spreadsheet: text cells and column names that would run as a formula
    are quoted (csv_cell); numbers, negative ones too, stay numbers."""
    shown = table.map(csv_cell)
    shown.columns = csv_header(table.columns)
    return shown.to_csv(index=False)


def _safe_name(factor: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in factor)


# ---------------------------------------------------------------------------- importances


def param_importances(records: list[TrialRecord], search: SearchConfig) -> dict[str, float]:
    """Optuna's parameter importances over the trials' best metric values; {} when there are too few.

    Ray's OptunaSearch keeps its study inside the searcher, so the study is rebuilt here from the
    results with `optuna.trial.create_trial`, using the same distributions the sweep sampled from.
    """
    import optuna

    dists = optuna_distributions(search)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line for this rebuilt one
    try:
        study = optuna.create_study(direction="maximize" if search.mode == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for r in records:
        best = r.best_row(search.metric, search.mode)
        params = {k: v for k, v in r.params.items() if k in dists}
        if best is None or not params:
            continue
        study.add_trial(optuna.trial.create_trial(params=params, value=float(best[search.metric]),
                                                  distributions={k: dists[k] for k in params}))
    try:
        with warnings.catch_warnings(record=True) as caught:  # one warning per parameter: told once below
            warnings.simplefilter("always")
            importances = dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError) as err:  # fewer than 2 trials, or no parameter ever varied
        log.warning("parameter importances skipped: %s", err)
        return {}
    rough = [w for w in caught if str(w.message).startswith("Some regimes for parameter")]
    for w in caught:
        if w not in rough:  # any other warning is Optuna's to tell, as before
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if rough:
        log.warning("parameter importances from %d trials are rough: some conditional parameters were "
                    "active (or inactive) in fewer than 2 trials", len(study.trials))
    return importances


# ---------------------------------------------------------------------------- all together


def write_reports(records: list[TrialRecord], search: SearchConfig, out_dir: str | Path) -> dict[str, Any]:
    """leaderboard.csv, history.csv, ablation.csv, curves/<factor>.png, importances.json under out_dir."""
    out = Path(out_dir)
    (out / "curves").mkdir(parents=True, exist_ok=True)
    leaderboard = build_leaderboard(records, search)
    history = build_history(records)
    ablation = build_ablation(records, search)
    # each file is replaced whole (temp + os.replace): a kill mid-write leaves the old report or the new one
    atomic_write_text(out / "leaderboard.csv", to_csv(leaderboard))
    atomic_write_text(out / "history.csv", to_csv(history))
    atomic_write_text(out / "ablation.csv", to_csv(ablation))
    plots = []
    if not history.empty:
        for factor in search.factors:
            plots.append(str(plot_factor_curves(history, factor_values(records, factor), factor,
                                                out / "curves" / f"{_safe_name(factor)}.png")))
    files = ["leaderboard.csv", "history.csv", "ablation.csv"] + [str(Path(p).relative_to(out)) for p in plots]
    importances = param_importances(records, search) if search.algorithm in ("optuna", "random") else {}
    if importances:
        atomic_write_json(out / "importances.json", importances, indent=2)
        files.append("importances.json")
    return {"leaderboard": leaderboard, "ablation": ablation, "importances": importances, "files": files}
