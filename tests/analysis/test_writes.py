"""Every file `cnnsweep analyze` writes goes through cnnsweep.atomic: a write that fails half-way (a
full disk here) leaves the previous file whole and no temp file beside it."""

from __future__ import annotations

import numpy as np
import pytest

from cnnsweep.analysis import charts, plotting
from cnnsweep.analysis.run import write_report
from cnnsweep.analysis.html import write_page
from cnnsweep.analysis.predictions import Predictions, save_predictions


def _figure_png(out):
    fig, axes = plotting.new_grid(2, 2)
    plotting.show(axes[0, 0], np.arange(64, dtype=np.uint8).reshape(8, 8))
    return plotting.save_figure(fig, out / "grid.png", title="a grid")


def _chart_png(out):
    fig = charts.new_figure(4, 3)
    fig.subplots().bar(range(10), range(10))
    return charts.save(fig, out / "chart.png")


def _report_html(out):
    return write_page(out, "report", [("a", "A", "<p>" + "x" * 50_000 + "</p>")])


def _predictions(out):
    p = Predictions(np.zeros(2000, np.int64), np.zeros((2000, 3), np.float32), 0.0)
    save_predictions(p, ["a", "b", "c"], out, "valid")


@pytest.mark.parametrize("write, names", [
    (_figure_png, ["grid.png"]), (_chart_png, ["chart.png"]), (_report_html, ["report.html"]),
    (_predictions, ["valid.npz", "valid.csv"]),
])
def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path, disk_full_after, write, names):
    for name in names:
        (tmp_path / name).write_bytes(b"previous run")
    with pytest.raises(OSError), disk_full_after(256):
        write(tmp_path)
    for name in names:
        assert (tmp_path / name).read_bytes() == b"previous run", name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_a_failed_metrics_json_write_leaves_the_previous_file_and_no_temp(tmp_path, disk_full_after, tiny_metrics):
    (tmp_path / "metrics.json").write_bytes(b"previous run")
    with pytest.raises(OSError), disk_full_after(256):
        write_report(tiny_metrics(notes=["x" * 50_000]), tmp_path)
    assert (tmp_path / "metrics.json").read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # and no report.html drawn from it
