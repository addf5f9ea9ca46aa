"""The one exception export raises for "the exported model is not right"."""

from __future__ import annotations

from typing import Any


class ExportError(RuntimeError):
    """Export ran but its result failed a check (ONNX checker, ORT vs PyTorch, unreadable metadata).

    Distinct from input errors (a missing checkpoint is CheckpointError): the CLI exits 1 for this
    one and 2 for bad input. `report` carries the partial ExportReport when there is one.
    """

    def __init__(self, message: str, report: Any = None):
        super().__init__(message)
        self.report = report
