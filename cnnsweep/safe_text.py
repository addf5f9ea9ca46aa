"""Strings read from files (class names, file names, trial ids, config values) made safe for where they
are written: a terminal or a UTF-8 file, a spreadsheet cell, a matplotlib label.

Pure string functions, no cnnsweep imports: every layer (data, sweep, analysis, predict, cli) uses them.
HTML escaping is `html.escape(printable(...))` where the page is built; rich markup is turned off in
the CLI's consoles.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# a plain number written as text ("-1", "+0.5", "1e-3") is not a formula: it stays readable as a number
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")


def printable(text: str) -> str:
    """`text` with lone surrogates shown as escapes, so it can be encoded as UTF-8.

    os.listdir() on Linux hands an undecodable file name back with each bad byte as a surrogate
    (surrogateescape); writing such a string to a UTF-8 file or terminal raises. The bytes are shown
    as `\\xNN`, a surrogate that stands for no byte (e.g. from JSON "\\ud800") as `\\udNNN`.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def csv_cell(value: Any) -> Any:
    """A cell for csv.writer / DataFrame.to_csv: text that a spreadsheet would run as a formula gets a
    leading `'` (OWASP); numbers (and text that is just a number) are left as they are."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBER.match(text):
        return "'" + text
    return text


def csv_header(names: Iterable[Any]) -> list[Any]:
    """Column names are cells too (a leaderboard column is named after a config key)."""
    return [csv_cell(str(n)) for n in names]


def plot_text(text: Any) -> str:
    """A string for a matplotlib title, tick label or legend, drawn literally: a `$` pair would
    otherwise start mathtext (`$x$` drawn as math, `$\\frac{$` raising at draw time).
    Escape once, where the text enters matplotlib: `\\$` is its literal dollar sign."""
    return printable(str(text)).replace("$", r"\$")
