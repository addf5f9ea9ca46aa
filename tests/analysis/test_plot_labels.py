"""Class names and config values reach matplotlib as literal text: `$...$` is not mathtext."""

from __future__ import annotations

import numpy as np
import torch

from cnnsweep.analysis.charts import balance_bars, confusion_heatmap, curves_with_spread
from cnnsweep.analysis.data_report import _grid
from cnnsweep.analysis.plotting import new_grid, save_figure, show

BAD = ["$\\frac{$", "$x$", b"caf\xe9".decode("utf-8", "surrogateescape")]


def test_confusion_heatmap_with_mathtext_names(tmp_path):
    path = confusion_heatmap(np.eye(3, dtype=int), BAD, tmp_path / "cm.png", normalized=False)
    assert path.stat().st_size > 0


def test_balance_and_curves_with_mathtext_values(tmp_path):
    balance_bars(np.ones(3), np.ones(3), BAD, "$\\frac{$", tmp_path / "b.png")
    series = {v: {"val/acc": np.ones((1, 2))} for v in BAD}
    curves_with_spread(series, ["val/acc"], "$\\frac{$", tmp_path / "c.png")


def test_titles_and_suptitles_with_mathtext(tmp_path):
    fig, axes = new_grid(1, 1)
    show(axes[0, 0], np.zeros((4, 4), np.uint8), BAD[0])
    save_figure(fig, tmp_path / "g.png", BAD[0] + " " + BAD[2])
    assert axes[0, 0].title.get_text() == "\\$\\frac{\\$"


def test_sample_grid_tick_labels(tmp_path):
    images = torch.zeros((3, 1, 4, 4), dtype=torch.uint8)
    _grid([("$a$", images)], [[0], [1], [2]], BAD, tmp_path / "s.png", "$\\frac{$")
