"""Sweep curve plots of continuous factors: sampled floats are binned into a few quantile ranges with short
labels (one legend entry per bin, not per sampled value); categorical factors keep one line per value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from cnnsweep import metrics as M
from cnnsweep.analysis import charts
from cnnsweep.analysis.ablation import ablation_report
from cnnsweep.analysis.predictions import Predictions
from cnnsweep.sweep.report import TrialRecord, build_history, factor_curves_figure, factor_values

LRS = np.geomspace(1e-4, 1e-2, 12) * np.linspace(1, 1.07, 12)  # 12 distinct lr values, full float digits
RANGE = re.compile(r"^lr \d\.\de-\d–\d\.\de-\d$")  # "lr 1.0e-4–2.3e-4": 2 significant digits


def _records(n: int = 12) -> list[TrialRecord]:
    out = []
    for i in range(n):
        hist = [{"epoch": e, M.VAL_ACC: 0.5 + 0.01 * i * e, M.VAL_LOSS: 2.0 - 0.1 * e} for e in range(3)]
        overrides = {"train.lr": float(LRS[i]), "model.batch_norm": bool(i % 2)}
        if i % 3:  # a conditional parameter: sampled in 8 of the 12 trials
            overrides["model.dropout"] = 0.05 + 0.037 * i
        out.append(TrialRecord(f"t{i:02d}", "finished", overrides, history=hist))
    return out


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]


def test_twelve_sampled_lrs_give_at_most_four_short_legend_entries():
    records = _records()
    fig = factor_curves_figure(build_history(records), factor_values(records, "train.lr"), "train.lr")
    labels = _legend(fig)
    assert 2 <= len(labels) <= 4, labels
    assert all(RANGE.match(label) for label in labels), labels
    lows = [float(label.split()[1].split("–")[0]) for label in labels]
    assert lows == sorted(lows), labels  # legend in increasing lr, not in string order


def test_bins_cover_every_trial_with_true_ranges():
    values = factor_values(_records(), "train.lr")
    assert values.nunique() <= 4 and len(values) == 12
    for label, ids in values.groupby(values).groups.items():
        lo, hi = (float(x) for x in label.split()[1].split("–"))
        lrs = [LRS[int(t[1:])] for t in ids]
        # the label is the range of the lrs actually in the bin, at 2 significant digits
        assert f"{min(lrs):.1e}" == f"{lo:.1e}" and f"{max(lrs):.1e}" == f"{hi:.1e}", (label, lrs)


def test_categorical_factor_keeps_one_line_per_value():
    records = _records()
    fig = factor_curves_figure(build_history(records), factor_values(records, "model.batch_norm"),
                               "model.batch_norm")
    assert sorted(_legend(fig)) == ["False", "True"]


def test_conditional_float_is_binned_and_keeps_not_sampled():
    values = factor_values(_records(), "model.dropout")
    labels = set(values)
    assert "(not sampled)" in labels and len(labels) <= 5, labels
    assert all(re.match(r"^dropout \d\.\d+–\d\.\d+$", v) for v in labels - {"(not sampled)"}), labels


def test_few_float_choices_stay_one_line_each_with_short_labels():
    records = _records(3)
    labels = set(factor_values(records, "train.lr"))
    assert len(labels) == 3 and all(len(v) <= 10 for v in labels), labels


def test_analysis_ablation_figure_bins_twelve_lrs(tmp_path, monkeypatch):
    records = _records()
    ids = [r.trial_id for r in records]
    pd.DataFrame({"rank": range(1, 13), "trial_id": ids, "param:train.lr": LRS,
                  "checkpoint": ids}).to_csv(tmp_path / "leaderboard.csv", index=False)
    build_history(records).to_csv(tmp_path / "history.csv", index=False)
    figures = []
    monkeypatch.setattr(charts, "save", lambda fig, path: figures.append(fig) or path)  # keep the Figure
    labels = np.array([0, 1, 1, 0])
    preds = {t: Predictions(labels, np.eye(2, dtype=np.float32)[[0, 1, i % 2, 0]], 0.0) for i, t in enumerate(ids)}
    out = ablation_report(tmp_path, preds, ["a", "b"], tmp_path)
    (factor,) = out["factors"]
    shown = [v["value"] for v in factor["values"]]
    assert 2 <= len(shown) <= 4 and all(RANGE.match(v) for v in shown), shown
    (fig,) = figures
    legend = _legend(fig)
    assert legend == shown, legend
    lows = [float(x.split()[1].split("–")[0]) for x in legend]
    assert lows == sorted(lows), legend
