"""Strings from files on their way out: terminal/HTML-safe text, CSV cells, matplotlib labels."""

from __future__ import annotations

import csv
import io

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnsweep.safe_text import csv_cell, csv_header, plot_text, printable

UNDECODABLE = b"caf\xe9".decode("utf-8", "surrogateescape")  # a Latin-1 file name listed on Linux


def test_printable_shows_undecodable_bytes_escaped_and_leaves_text_alone():
    assert printable(UNDECODABLE) == "caf\\xe9"
    assert printable("Straße ⚠") == "Straße ⚠"
    assert printable("\ud800x") == "\\ud800x"  # a surrogate that stands for no byte
    printable(UNDECODABLE).encode("utf-8")  # strict: must not raise


@pytest.mark.parametrize("cell", ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "=HYPERLINK(\"x\")"])
def test_formula_cells_are_quoted(cell):
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("value", [-1, -0.5, 3, 2.5, None, True, "-1", "-0.25", "+3", "1e-3", "Stop", "a=b"])
def test_numbers_and_plain_text_stay_as_they_are(value):
    assert csv_cell(value) == value


def test_csv_cells_round_trip_through_csv_module():
    buf = io.StringIO()
    csv.writer(buf).writerow([csv_cell(v) for v in ("=1+1", UNDECODABLE, -3, 'a,"b"\nc')])
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == ["'=1+1", "caf\\xe9", "-3", 'a,"b"\nc']
    assert csv_header(["=x", "id"]) == ["'=x", "id"]


@pytest.mark.parametrize("name", ["$x$", "$\\frac{$", "a$b$c$d", "100$ $", "\\$x$", "$", UNDECODABLE])
def test_plot_text_is_drawn_literally(name):
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    text = ax.set_title(plot_text(name))
    ax.set_xticks([0], [plot_text(name)])
    ax.plot([0], label=plot_text(name))
    ax.legend()
    fig.canvas.draw()  # mathtext errors surface here
    shown, is_math = text._preprocess_math(text.get_text())
    assert not is_math and shown == printable(name)
