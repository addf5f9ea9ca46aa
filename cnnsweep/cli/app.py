"""The typer app, shared console and error handling for every subcommand."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.text import Text

from cnnsweep.safe_text import printable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find, train, explain and serve CNN image classifiers on Ray.")


class PlainConsole(Console):
    """A console whose strings are text, never markup: paths, ids and class names come from files, and a
    `[/]` or `[link=...]` in one must print as it is (or it raises, or restyles the line). Undecodable bytes
    of a file name print escaped instead of failing the terminal's encoding. Styles: `styled`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, **kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)


def styled(label: str, style: str, message: Any = "") -> Text:
    """`label` in `style`, then `message` as plain text (e.g. a red "error:" and the error)."""
    return Text.assemble((label, style), " " if message != "" else "", printable(str(message)))


out = PlainConsole()  # results
err = PlainConsole(stderr=True)  # progress and messages, so stdout stays machine-readable with --json

USAGE_EXIT = 2  # bad input: config, data, checkpoint or argument problems


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "your input is wrong", not "cnnsweep crashed"."""
    from cnnsweep.checkpoint import CheckpointError
    from cnnsweep.config import ConfigError
    from cnnsweep.data import DataError
    from cnnsweep.export.ensemble import EnsembleError
    from cnnsweep.models import ModelError
    from cnnsweep.predict import PredictError
    return (ConfigError, DataError, ModelError, CheckpointError, EnsembleError, PredictError, FileNotFoundError)


def friendly_errors(fn: Callable) -> Callable:
    """Print input errors as one clear message and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_errors() as e:
            err.print(styled("error:", "bold red", e), highlight=False, soft_wrap=True)
            raise typer.Exit(USAGE_EXIT) from None

    return wrapper


def print_json(obj: Any) -> None:
    """One JSON object on the last line of stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
