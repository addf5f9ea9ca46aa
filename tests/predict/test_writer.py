"""predictions.csv with hostile ids and class names: formulas quoted, undecodable names escaped."""

from __future__ import annotations

import csv

from cnnsweep.predict.writer import write_rows

UNDECODABLE = b"caf\xe9.png".decode("utf-8", "surrogateescape")


def test_formula_ids_and_class_names_are_quoted_and_numbers_kept(tmp_path):
    rows = [{"id": "=HYPERLINK(\"http://x\")", "label": 0, "class_name": "@cmd", "prob": 0.5},
            {"id": UNDECODABLE, "label": 1, "class_name": "-1+2", "prob": 0.25, "true_label": 1}]
    path = write_rows(tmp_path / "p.csv", rows, with_truth=True)
    with open(path, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert got[0]["id"] == "'=HYPERLINK(\"http://x\")" and got[0]["class_name"] == "'@cmd"
    assert got[1]["id"] == "caf\\xe9.png" and got[1]["class_name"] == "'-1+2"
    assert got[1]["prob"] == "0.25" and got[1]["true_label"] == "1"
