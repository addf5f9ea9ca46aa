"""ablation_report keys trials by the leaderboard's trial_id as text: all-digit ids ("00001", which pandas
would read as the number 1) must still match the predictions and the history."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cnnsweep import metrics as M
from cnnsweep.analysis.ablation import ablation_report
from cnnsweep.analysis.predictions import Predictions


def test_all_digit_trial_ids_match(tmp_path):
    ids = ["00001", "00002", "00003"]
    pd.DataFrame({"rank": [1, 2, 3], "trial_id": ids, "param:model.width": [8, 4, 8],
                  "checkpoint": ["a", "b", "c"]}).to_csv(tmp_path / "leaderboard.csv", index=False)
    pd.DataFrame({"trial_id": ids, "epoch": [0, 0, 0], M.VAL_ACC: [0.5, 0.6, 0.7],
                  M.TRAIN_LOSS: [1.0, 1.1, 1.2], M.VAL_LOSS: [1.0, 0.9, 0.8]}).to_csv(tmp_path / "history.csv", index=False)
    labels = np.array([0, 1, 1, 0])
    logits = {"00001": [[1, 0], [0, 1], [0, 1], [0, 1]], "00002": [[1, 0], [1, 0], [1, 0], [1, 0]],
              "00003": [[1, 0], [0, 1], [0, 1], [1, 0]]}
    preds = {t: Predictions(labels, np.array(z, dtype=np.float32), 0.0) for t, z in logits.items()}
    out = ablation_report(tmp_path, preds, ["a", "b"], tmp_path)
    (factor,) = out["factors"]
    values = {v["value"]: v for v in factor["values"]}
    assert sorted(values["8"]["trials"]) == ["00001", "00003"] and values["4"]["trials"] == ["00002"]
    assert values["8"]["accuracy_mean"] == (0.75 + 1.0) / 2 and values["4"]["accuracy_mean"] == 0.5
    assert values["8"]["curves"][M.VAL_ACC] == [0.6]  # history rows of 00001 and 00003
