"""`analyze` on a 2-class model trained on an image folder whose class names are hostile: markup,
mathtext, a spreadsheet formula and an undecodable byte. Everything is written, nothing runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cnnsweep.analysis.run import analyze_target
from cnnsweep.analysis.predictions import Predictions
from cnnsweep.analysis.scores import summary_metrics
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit

pytestmark = pytest.mark.slow

CLASSES = ["<img src=x onerror=alert(1)>$\\frac{$", b"=caf\xe9 $x$ [bold]".decode("utf-8", "surrogateescape")]


def test_summary_metrics_of_two_classes():
    p = Predictions(np.array([0, 1, 1, 0]), np.array([[2.0, 0], [0, 1], [3, 0], [1, 0]]), 0.1)
    s = summary_metrics(p, 2)
    assert s["top_k"] == 1 and s["top5_accuracy"] == s["accuracy"] == 0.75


def _two_class_folder(root):
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        for i in range(24):
            pixels = rng.integers(0, 80, (12, 12, 3)) + 150 * c  # class 1 is brighter: learnable
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory):
    data = _two_class_folder(tmp_path_factory.mktemp("folder"))
    cfg = validate_config({"name": "binary", "data": {"name": "image_folder", "root": str(data), "val_fraction": 0.25},
                           "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1},
                           "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "amp": "off"}})
    hooks = LocalHooks(output=tmp_path_factory.mktemp("run"))
    fit(cfg, load_dataset(cfg.data), hooks)
    ckpt = hooks.last_checkpoint
    out = tmp_path_factory.mktemp("report")
    return analyze_target(ckpt, split="valid", output=out, class_image_steps=2), out


def test_two_class_model_is_analyzed(binary_report):
    m, out = binary_report
    s = m.models[0].summary
    assert s.top_k == 1 and s.top5_accuracy == pytest.approx(s.accuracy)
    assert json.loads((out / "metrics.json").read_text())["data"]["class_names"][1] == "=caf\\xe9 $x$ [bold]"


def test_hostile_class_names_are_text_everywhere(binary_report):
    _, out = binary_report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;$\\frac{$" in html
    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        names = {r["true_name"] for r in csv.DictReader(f)}
    assert names == {CLASSES[0], "'=caf\\xe9 $x$ [bold]"}
