"""The user-facing error types, one module for all of them. Each is a problem phrased for a person:
the CLI prints its message on one line and exits 2 (bad input) or 1 (ExportError: a check failed),
never a traceback. ConfigError (cnnsweep.config) and CheckpointError (cnnsweep.checkpoint) live beside
the schemas they report on; the server's HttpError (cnnsweep.serving.http_error) carries a status code.
"""

from __future__ import annotations

from typing import Any


class DataError(ValueError):
    """A data problem (missing file, bad pickle, wrong shape). A ValueError, so the CLI catches it with
    the config errors."""


class ExportError(RuntimeError):
    """Export ran but its result failed a check (ONNX checker, ORT vs PyTorch, unreadable metadata).

    Distinct from input errors (a missing checkpoint is CheckpointError): the CLI exits 1 for this
    one and 2 for bad input. `report` carries the partial ExportReport when there is one.
    """

    def __init__(self, message: str, report: Any = None):
        super().__init__(message)
        self.report = report


class AnalysisError(ValueError):
    """Bad input for `cnnsweep analyze`: no such path, a folder that is no run, no usable split."""


class PredictError(ValueError):
    """Bad input for `cnnsweep predict`: a model path or an input that cannot be used (missing, not an
    image, unknown dataset, ...)."""
