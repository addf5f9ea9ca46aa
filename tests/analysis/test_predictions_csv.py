"""The analysis' predictions CSV is a real CSV: quotes, commas, newlines and formulas in class names."""

from __future__ import annotations

import csv

import numpy as np

from cnnsweep.analysis.predictions import Predictions, save_predictions


def test_class_names_are_quoted_cells(tmp_path):
    names = ['a "quoted", name\nnext', "=1+1", b"x\xff".decode("utf-8", "surrogateescape")]
    p = Predictions(np.array([0, 1, 2]), np.array([[2.0, 1, 0], [0, 0, 3], [0, 1, 0]]), 0.1)
    save_predictions(p, names, tmp_path, "predictions")
    with open(tmp_path / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["true_name"] for r in rows] == [names[0], "'=1+1", "x\\xff"]
    assert [r["pred_name"] for r in rows] == [names[0], "x\\xff", "'=1+1"]
    assert [int(r["pred"]) for r in rows] == [0, 2, 1] and float(rows[0]["confidence"]) > 0.5
