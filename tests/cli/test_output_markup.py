"""CLI output with names from files: rich markup in them is printed as text, undecodable bytes escaped."""

from __future__ import annotations

import pytest
import typer

from cnnsweep.cli.app import friendly_errors
from cnnsweep.cli.predict import _report
from cnnsweep.data import DataError

UNDECODABLE = b"caf\xe9".decode("utf-8", "surrogateescape")


def test_error_message_with_markup_is_printed_as_text(capsys):
    @friendly_errors
    def fails():
        raise DataError("/data/[/]/[link=http://evil]x[/link]: no train.pickle")

    with pytest.raises(typer.Exit):
        fails()
    assert "/data/[/]/[link=http://evil]x[/link]: no train.pickle" in capsys.readouterr().err


def test_predict_summary_with_markup_and_undecodable_names(capsys):
    s = {"num_images": 1, "output": f"[bold]{UNDECODABLE}.csv", "seconds": 0.1, "accuracy": None,
         "num_skipped": 1, "skipped": [{"id": "[red]a[/red].png", "error": "cannot decode [/]"}]}
    _report(s, json_out=False)
    got = capsys.readouterr()
    assert "[bold]caf\\xe9.csv" in got.out
    assert "[red]a[/red].png: cannot decode [/]" in got.err and "skipped 1 bad image(s)" in got.err
