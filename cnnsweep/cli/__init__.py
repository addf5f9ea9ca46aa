"""`cnnsweep` command line. Each subcommand parses arguments and calls one library function."""

from cnnsweep.cli.app import app
from cnnsweep.cli import summary as _summary  # noqa: F401  (registers the command)
from cnnsweep.cli import train as _train  # noqa: F401
from cnnsweep.cli import export as _export  # noqa: F401
from cnnsweep.cli import serve as _serve  # noqa: F401
from cnnsweep.cli import tune as _tune  # noqa: F401
from cnnsweep.cli import predict as _predict  # noqa: F401
from cnnsweep.cli import analyze as _analyze  # noqa: F401
from cnnsweep.cli import schema as _schema  # noqa: F401

__all__ = ["app"]
